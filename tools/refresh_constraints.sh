#!/usr/bin/env bash
# Re-resolve constraints.txt: a fresh venv installs medals and its test extras under pyproject's bounds
# alone (no constraints), then its pip freeze becomes the new constraints.txt. Run the tests after it
# (.ci/run) before committing the new file.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
python3 -m venv "$venv"
"$venv/bin/pip" install -q -e '.[test]'
"$venv/bin/pip" install -q --no-deps stardist torchxrayvision
{
    sed -n '1,/^# Refresh/p' constraints.txt
    "$venv/bin/pip" freeze --exclude-editable | grep -v '^medals'
} > constraints.txt.new
mv constraints.txt.new constraints.txt
rm -rf "$(dirname "$venv")"
git --no-pager diff --stat constraints.txt

"""The GPU suite's one-file summary: per workload medals / seed, medals % of its own ceiling, the raw
images/s of every row and the targets, with the device name and the commit.

    python benchmarks/suite_summary.py OUTDIR [--results DIR]

reads OUTDIR/e2e.json and OUTDIR/unet.json (benchmarks/throughput.py --json, any of them may be missing)
and writes DIR/throughput-<device>-<date>.json (DIR: benchmarks/results), printing the path.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from medals.files import read_json, write_json  # noqa: E402

# The targets the issue sets: medals end to end over the seed-style pipeline, and medals' share of its
# own synthetic-input ceiling (the same model and step on tensors already on the device).
TARGETS = {"b3": 1.6, "resnet34": 4.0, "unet": 2.5}
CEILING_TARGET_PCT = 85.0


def commit() -> str:
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def summarise(blocks: list[dict]) -> dict:
    if not blocks:
        raise SystemExit("no throughput JSON to summarise (run the e2e and unet parts first)")
    machine = blocks[0]["machine"]
    device = machine.get("gpu") or machine.get("cpu") or "unknown"
    out = {
        "device": device,
        "date": blocks[0]["date"],
        "commit": commit(),
        "quick": bool(blocks[0]["args"].get("quick")),
        "machine": machine,
        "workloads": {},
    }
    for block in blocks:
        for name, result in block["workloads"].items():
            ratios = result["ratios"]
            over_seed = ratios["medals_vs_seed"]["value"]
            pct = ratios["medals_pct_of_ceiling"]["value"]
            out["workloads"][name] = {
                "medals_over_seed": over_seed,
                "medals_pct_of_ceiling": pct,
                "medals_cache_over_seed": ratios["medals_cache_vs_seed"]["value"],
                "images_per_s": {row: values["images_per_s"] for row, values in result["rows"].items()},
                "data_path": result["rows"]["medals_e2e"]["data_path"],
                "target_medals_over_seed": TARGETS.get(name),
                "target_pct_of_ceiling": CEILING_TARGET_PCT,
                "meets_targets": over_seed >= TARGETS.get(name, 0) and pct >= CEILING_TARGET_PCT,
            }
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    blocks = [read_json(p) for p in (args.outdir / "e2e.json", args.outdir / "unet.json") if p.is_file()]
    summary = summarise(blocks)
    slug = re.sub(r"[^a-z0-9]+", "-", summary["device"].lower()).strip("-")
    path = args.results / f"throughput-{slug}-{summary['date'][:10]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, summary)  # atomic; a NaN ratio (a row that did not run) is null, not invalid JSON
    print(f"wrote {path}")
    for name, row in summary["workloads"].items():
        print(
            f"{name}: medals / seed {row['medals_over_seed']:.2f}x (target {row['target_medals_over_seed']}x), "
            f"{row['medals_pct_of_ceiling']:.0f}% of ceiling (target {CEILING_TARGET_PCT:.0f}%), path {row['data_path']}"
        )
    return path


if __name__ == "__main__":
    main()

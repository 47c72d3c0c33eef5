"""benchmarks/throughput.py --quick on the CPU: every row measured, ratios that agree with the figures.

No timing is asserted: the figures depend on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "throughput.py"
ROWS = ("seed_e2e", "medals_e2e", "medals_cache_e2e", "seed_synthetic", "medals_synthetic", "medals_tta8")
RATIO_COLUMNS = ("medals / seed", "cache / seed", "seed % of ceiling", "medals % of ceiling")


def _check_ratios(block: dict) -> None:
    rows = block["rows"]
    assert block["ratios"]
    for name, ratio in block["ratios"].items():
        expected = (
            ratio["scale"]
            * rows[ratio["numerator"]]["images_per_s"]
            / rows[ratio["denominator"]]["images_per_s"]
        )
        assert math.isclose(ratio["value"], expected, rel_tol=1e-9), name


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def test_quick_run_reports_every_row(tmp_path):
    out = tmp_path / "throughput.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--json", str(out)]
    command += ["--data-dir", str(tmp_path / "data")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = json.loads(out.read_text())
    assert results["machine"]["cpu_count"] >= 1
    assert set(results["workloads"]) == {"b3", "resnet34", "unet"}
    for name, block in results["workloads"].items():
        assert set(block["rows"]) == set(ROWS), name
        for key, row in block["rows"].items():
            assert _positive(row["images_per_s"]), (name, key)
            assert row["images"] > 0 and row["seconds"] > 0
            assert math.isclose(row["images_per_s"], row["images"] / row["seconds"], rel_tol=1e-9)
            assert row["data_path"] in ("cpu", "gpu", "synthetic")
        _check_ratios(block)
        assert block["cache_build"]["seconds"] >= 0
    datapath = results["datapath"]
    assert set(datapath["rows"]) == {"seed_jpeg", "medals_cache"}
    assert all(_positive(row["images_per_s"]) for row in datapath["rows"].values())
    _check_ratios(datapath)

    # The suite's summary file (benchmarks/suite_summary.py) from the same JSON: its shape and its numbers.
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "e2e.json").write_text(out.read_text())
    summary_run = subprocess.run(
        [
            sys.executable,
            str(SCRIPT.parent / "suite_summary.py"),
            str(tmp_path / "suite"),
            "--results",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert summary_run.returncode == 0, summary_run.stderr[-2000:]
    written = Path(summary_run.stdout.splitlines()[0].removeprefix("wrote "))
    assert written.parent == tmp_path and written.name.startswith("throughput-") and written.suffix == ".json"
    summary = json.loads(written.read_text())
    assert summary["device"]
    assert len(summary["commit"]) == 40 or summary["commit"] == "unknown"  # outside a git checkout
    assert summary["quick"] is True
    for name, block in results["workloads"].items():
        row = summary["workloads"][name]
        assert row["medals_over_seed"] == block["ratios"]["medals_vs_seed"]["value"]
        assert row["medals_pct_of_ceiling"] == block["ratios"]["medals_pct_of_ceiling"]["value"]
        assert row["images_per_s"] == {k: v["images_per_s"] for k, v in block["rows"].items()}
        assert isinstance(row["meets_targets"], bool)

    printed = done.stdout
    for column in RATIO_COLUMNS:
        assert f"| {column} |" in printed, column
    assert "images/s per core" in printed
    for name in ("b3", "resnet34", "unet"):
        assert f"| {name} (" in printed  # a summary line per workload


def test_augment_ops_quick_run_profiles_both_lists(tmp_path):
    script = SCRIPT.parent / "augment_ops.py"
    out = tmp_path / "ops.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [
        sys.executable,
        str(script),
        "--quick",
        "--device",
        "cpu",
        "--workers",
        "1",
        "--json",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results) == {"melanoma", "pneumothorax"}
    fused = {
        "melanoma": "FusedWarps(Affine, Resize)",
        "pneumothorax": "FusedWarps(HorizontalFlip, Affine, Resize)",
    }
    for name, table in results.items():
        for key in (fused[name], f"{fused[name]}, op by op", "whole list", "whole list, warps op by op"):
            assert _positive(table[key]), (name, key)
        assert _positive(table["JPEG decode (batched)"]) and _positive(table["loader + prepare, 1 workers"])
        assert "fused / op by op" in done.stdout

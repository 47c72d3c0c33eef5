"""A run folder that nothing destroys: kills at three points resume to the same numbers, damaged files are
said in one sentence or redone, two launches on one folder do not both train, and folds of a changed
config are moved aside and brought back byte for byte.

One tiny melanoma-like run (2 folds x 2 epochs of a test_resnet at 32 px) is trained once per module;
each case works on a copy of it (or of its prepared part). The kills and the concurrent launches are
real `python -m medals` processes; the damaged-file cases run the CLI's main() in this process.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from medals.cli import main
from medals.demo import generate as gen
from medals.files import KILL_WRITE_ENV, TEMP_PATTERN, read_json
from medals.train.setup import KILL_ENV

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

TINY = [
    "train.epochs=2",
    "split.n_folds=2",
    "train.image_size=32",
    "data.cache_size=32",
    "train.batch_size=8",  # 20 training images per fold: 2 steps per epoch (drop_last)
    "train.progress=false",
    "infer.tta=1",
    "model.backbone=test_resnet",
]
ENV = {k: v for k, v in os.environ.items() if k not in (KILL_ENV, KILL_WRITE_ENV)}
ENV.update(OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
# What only training, evaluation and prediction write: removed to get a copy that is prepared and split.
LATER = {"oof.parquet", "metrics.json", "test.parquet", "submission.csv", "report.html", "stale", "locks"}


def cli(recipe: Path, run_dir: Path, verb: str = "run", *extra: str) -> list[str]:
    return [sys.executable, "-m", "medals", verb, str(recipe), f"run_dir={run_dir}", *TINY, *extra]


def launch(recipe: Path, run_dir: Path, verb: str = "run", *extra: str, **env: str):
    return subprocess.run(
        cli(recipe, run_dir, verb, *extra), env={**ENV, **env}, capture_output=True, text=True, timeout=600
    )


def start(recipe: Path, run_dir: Path, verb: str = "run", *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        cli(recipe, run_dir, verb, *extra),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(proc: subprocess.Popen, marker: str) -> str:
    """The process's output up to the first line holding ``marker`` (it prints with flush)."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} never printed; stderr: {proc.stderr.read()[-2000:]}")


def one_sentence(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("medals: error: "), stderr[-3000:]
    assert "Traceback" not in stderr
    return lines[0]


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*.tmp") if TEMP_PATTERN.match(p.name)]


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("melanoma")
    gen.generate_melanoma(folder, n_train=40, n_test=8, size=32, seed=1)
    path = folder / "demo_melanoma.yaml"
    shutil.copy(resources.files("medals.demo").joinpath("demo_melanoma.yaml"), path)
    return path


@pytest.fixture(scope="module")
def reference(recipe, tmp_path_factory) -> Path:
    """The uninterrupted run every case is compared with."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    done = launch(recipe, run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


def prepared(reference: Path, target: Path) -> Path:
    """A copy of the reference with only prepare, split and search done."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        if Path(folder) == reference:
            return {n for n in names if n in LATER or (n.startswith("fold") and n[4:].isdigit())}
        if Path(folder) == reference / "stages":
            return {f"{stage}.json" for stage in ("train", "evaluate", "predict", "submit")}
        return set()

    shutil.copytree(reference, target, ignore=ignore)
    return target


def assert_same_results(run_dir: Path, reference: Path) -> None:
    """The same per-fold and pooled metrics and the same submission as the uninterrupted run."""
    got, want = read_json(run_dir / "metrics.json"), read_json(reference / "metrics.json")
    assert got["folds"].keys() == want["folds"].keys()
    for part in ("pooled", *(f"folds.{k}" for k in want["folds"])):
        g, w = (got, want) if part == "pooled" else (got["folds"], want["folds"])
        key = part.split(".")[-1]
        assert g[key] == pytest.approx(w[key], rel=1e-6, abs=1e-9), part
    ours = pd.read_csv(run_dir / "submission.csv").set_index("image_name").sort_index()
    theirs = pd.read_csv(reference / "submission.csv").set_index("image_name").sort_index()
    assert ours.index.equals(theirs.index)
    assert ours["target"].to_numpy() == pytest.approx(theirs["target"].to_numpy(), rel=1e-5, abs=1e-7)


# ---- kills ---------------------------------------------------------------------------------------------------


def test_kills_mid_epoch_in_a_checkpoint_write_and_in_predict_resume_to_the_same_results(
    recipe, reference, tmp_path
):
    run_dir = prepared(reference, tmp_path / "run")

    # 1. Mid-epoch: step 3 is the first step of fold 0's second epoch; last.pt holds epoch 1.
    killed = launch(recipe, run_dir, **{KILL_ENV: "3"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert "fold 0 epoch 1/2" in killed.stdout and "fold 0 epoch 2/2" not in killed.stdout
    # The dead process's locks: its record stays in the lock files, the kernel released the locks, and
    # the next launch takes them over.
    assert read_json(run_dir / "locks" / "fold0.lock")["pid"] not in (os.getpid(), None)

    # 2. During a checkpoint write: the second last.pt of this launch is fold 1's first, killed after its
    # temporary file is complete and before the rename.
    killed = launch(recipe, run_dir, **{KILL_WRITE_ENV: "last.pt:2"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert "fold 0 epoch 1/2" not in killed.stdout  # resumed at epoch 2: nothing of epoch 1 redone
    assert "fold 0 epoch 2/2" in killed.stdout and "train: fold 1" in killed.stdout
    assert "fold 1 epoch 1/2" not in killed.stdout  # (an epoch's line comes after its last.pt)
    left = temp_files(run_dir)
    assert [p.parent.name for p in left] == ["fold1"] and left[0].name.startswith(".last.pt.")
    assert not (run_dir / "fold1" / "last.pt").exists()

    # 3. During predict: killed writing fold 1's test predictions.
    killed = launch(recipe, run_dir, **{KILL_WRITE_ENV: "test.parquet:2"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert "fold 1 epoch 1/2" in killed.stdout  # the one epoch lost with the unfinished last.pt
    assert "fold 0 epoch" not in killed.stdout and "predict: fold 0" in killed.stdout
    assert [p.name[:14] for p in temp_files(run_dir)] == [".test.parquet."]  # the last.pt one is gone

    done = launch(recipe, run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert " epoch " not in done.stdout  # both folds finished: nothing trained again
    assert "evaluate: already done" in done.stdout and "predict: fold 1" in done.stdout
    assert temp_files(run_dir) == []
    assert_same_results(run_dir, reference)
    for fold in (0, 1):
        log = pd.read_csv(run_dir / f"fold{fold}" / "log.csv")
        want = pd.read_csv(reference / f"fold{fold}" / "log.csv")
        assert log["epoch"].tolist() == [1, 2]
        assert log["val_loss"].tolist() == pytest.approx(want["val_loss"].tolist(), rel=1e-6)


# ---- damaged files -------------------------------------------------------------------------------------------


def _damage(run_dir: Path, name: str) -> None:
    path = run_dir / name
    if path.suffix == ".json":
        path.write_text("")  # emptied
    else:
        with open(path, "r+b") as handle:  # truncated
            handle.truncate(path.stat().st_size // 2)


def _run_in_process(
    recipe: Path, run_dir: Path, capsys, *extra: str, verb: str = "run"
) -> tuple[int, str, str]:
    code = main([verb, str(recipe), f"run_dir={run_dir}", *TINY, *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    ("damaged", "sentences"),
    [
        # Three stages' outputs at once (split's redo writes the same folds, so nothing else is redone).
        (
            ["folds.parquet", "metrics.json", "test.parquet"],
            [
                "folds.parquet was changed or truncated since split finished: redoing split",
                "metrics.json was changed or truncated since evaluate finished: redoing evaluate",
                "test.parquet was changed or truncated since predict finished: redoing predict",
            ],
        ),
        (
            ["oof.parquet", "stages/predict.json"],
            [
                "oof.parquet was changed or truncated since evaluate finished: redoing evaluate",
                "stages/predict.json is corrupt (empty or not a stamp): redoing predict",
            ],
        ),
        (
            ["table.parquet"],
            [
                "table.parquet was changed or truncated since prepare finished: redoing prepare",
                "prepare was redone or reopened since split finished: redoing split",
            ],
        ),
    ],
    ids=["folds-metrics-test", "oof-stamp", "table"],
)
def test_a_damaged_run_file_is_said_and_its_stage_redone(
    recipe, reference, tmp_path, capsys, damaged, sentences
):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    for name in damaged:
        _damage(run_dir, name)
    code, out, err = _run_in_process(recipe, run_dir, capsys)
    assert code == 0, err
    for sentence in sentences:
        assert sentence in out
    assert " epoch " not in out  # the folds are intact: never trained again
    assert_same_results(run_dir, reference)
    # Nothing redone twice: the next run skips every stage.
    code, out, _ = _run_in_process(recipe, run_dir, capsys)
    assert code == 0 and out.count("already done for this config") == 6, out


def test_a_damaged_checkpoint_of_a_finished_fold_is_set_aside_and_the_fold_trained_again(
    recipe, reference, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    _damage(run_dir, "fold1/final.pt")
    code, out, err = _run_in_process(recipe, run_dir, capsys)
    assert code == 0, err
    assert "fold1/final.pt was changed or truncated since train finished: redoing train" in out
    assert "fold 1 moved aside to stale/" in out and "its files changed since train finished" in out
    assert "fold 0 epoch" not in out and "fold 1 epoch 2/2" in out  # only the damaged fold
    assert_same_results(run_dir, reference)  # retrained the same way (seeded), evaluated again
    assert len(list((run_dir / "stale").glob("*/fold1"))) == 1  # kept until `medals clean`


@pytest.mark.parametrize(
    ("damaged", "argv", "named"),
    [
        ("metrics.json", ["report", "{run}"], "metrics.json is corrupt (JSONDecodeError"),
        ("test.parquet", ["submit", "{recipe}", "run_dir={run}", *TINY, "--force"], "redo predict"),
        ("oof.parquet", ["report", "{run}"], "redo evaluate"),
        ("fold0/best.pt", ["evaluate", "{recipe}", "run_dir={run}", *TINY, "--force"], "cannot be read"),
    ],
    ids=["report-metrics", "force-submit-test", "report-oof", "evaluate-checkpoint"],
)
def test_a_reader_of_a_damaged_file_says_which_in_one_sentence(
    recipe, reference, tmp_path, capsys, damaged, argv, named
):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    _damage(run_dir, damaged)
    capsys.readouterr()
    args = [a.format(run=run_dir, recipe=recipe) for a in argv]
    assert main(args) == 2
    sentence = one_sentence(capsys.readouterr().err)
    assert damaged in sentence and named in sentence


# ---- two launches --------------------------------------------------------------------------------------------


def test_a_second_launch_on_the_same_work_stops_naming_the_holder_and_other_folds_run_beside(
    recipe, reference, tmp_path
):
    run_dir = prepared(reference, tmp_path / "run")
    first = start(recipe, run_dir, "train", "--fold", "0")
    try:
        read_until(first, "train: fold 0")
        first.send_signal(signal.SIGSTOP)  # frozen while it holds the run (shared) and fold 0 locks
        host = os.uname().nodename

        for argv in (("run",), ("train", "--fold", "0")):  # the whole run, or the same fold
            second = launch(recipe, run_dir, *argv)
            assert second.returncode == 2, second.stderr[-3000:]
            sentence = one_sentence(second.stderr)
            assert f"is in use by pid {first.pid} on {host} since" in sentence and "--wait" in sentence
            assert "medals train" in sentence and " epoch " not in second.stdout

        other = launch(recipe, run_dir, "train", "--fold", "1")  # another fold: runs beside it
        assert other.returncode == 0, other.stderr[-3000:]
        assert "fold 1 epoch 2/2" in other.stdout and (run_dir / "fold1" / "final.pt").is_file()

        waiting = start(recipe, run_dir, "run", "--wait")
        read_until(waiting, "waiting for pid")
        first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=600) == 0, first.stderr.read()[-3000:]
        out, err = waiting.communicate(timeout=600)
        assert waiting.returncode == 0, err[-3000:]
        assert " epoch " not in out and "evaluate: pooled OOF" in out  # it trained nothing itself
    finally:
        for proc in (first,):
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
    assert_same_results(run_dir, reference)


# ---- a changed setting changed back --------------------------------------------------------------------------


def test_folds_of_a_changed_config_are_kept_aside_brought_back_and_cleaned(
    recipe, reference, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    trained = {k: v for k, v in digests(run_dir).items() if k.startswith("fold")}

    code, out, err = _run_in_process(recipe, run_dir, capsys, "train.lr=0.001", verb="train")
    assert code == 0, err
    assert "fold 0 moved aside to stale/" in out and "fold 1 epoch 2/2" in out
    # Training reopened: what read the old folds is stale at once, never "done" for the new config.
    from medals.config import load_recipe
    from medals.stages.layout import RunLayout
    from medals.stages.pipeline import stage_state, still_finished

    changed = load_recipe(recipe, [f"run_dir={run_dir}", *TINY, "train.lr=0.001"])
    original = load_recipe(recipe, [f"run_dir={run_dir}", *TINY])
    for stage in ("evaluate", "predict", "submit"):
        assert stage_state(changed, RunLayout(run_dir), stage) == "stale"
        assert not still_finished(RunLayout(run_dir), stage)
    stale = [p for p in (run_dir / "stale").iterdir() if p.is_dir()]
    assert len(stale) == 1 and sorted(p.name for p in stale[0].iterdir()) == [
        "fold0",
        "fold0.json",
        "fold1",
        "fold1.json",
    ]

    code, out, err = _run_in_process(recipe, run_dir, capsys, verb="train")  # the setting changed back
    assert code == 0, err
    assert " epoch " not in out and "fold 1 brought back from stale/" in out
    now = digests(run_dir)
    assert {k: now[k] for k in trained} == trained  # byte-identical, not trained again
    assert stage_state(original, RunLayout(run_dir), "train") == "done"

    # compare and report list the folds of lr 0.001, now aside; clean lists, then deletes them.
    assert main(["compare", str(run_dir), "--csv"]) == 0
    assert "stale_folds" in capsys.readouterr().out
    assert main(["clean", str(run_dir), "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("finished, moved") == 2 and "would delete 2 set-aside fold(s)" in listing
    assert (run_dir / "stale").is_dir()
    assert main(["clean", str(recipe), f"run_dir={run_dir}", *TINY]) == 0
    assert "deleted 2 set-aside fold(s)" in capsys.readouterr().out
    assert not (run_dir / "stale").exists()
    assert {k: v for k, v in digests(run_dir).items() if k.startswith("fold")} == trained

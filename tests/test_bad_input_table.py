"""The bad-input table: each case of bad CSVs, images, recipe settings, command lines and OS faults exits 2
with exactly one `medals: error:` line naming what is at fault, no traceback, and a run folder whose every
file is byte-identical afterwards (hashed before and after).

Most cases run the CLI in-process (medals.cli.main). A competition is generated once per module; cases that
break its files work on a copy. "Finished" cases copy a finished 2-fold run (trained once per module) and
rerun it with a bad setting: the check must come before any epoch and before any file is touched. The run
folder is "run" relative to the working directory (each case chdirs into its own folder), so a copied run
resolves to the same config and its stages stay done.

OS faults: the read-only folder is a real read-only bind mount in a private mount namespace of a subprocess
(`unshare -rm`; tests run as root, for whom chmod does not stop writes), skipped where unshare is not
allowed; disk full and permission denied are OSErrors raised in-process from the file system calls that
medals.files makes (monkeypatched), as the kernel would raise them.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from medals.cli import main
from medals.demo.melanoma import generate_melanoma
from tests.run_files import work_hashes

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "run_dir": "run",
    "split": {"method": "stratified_grouped", "n_folds": 2},
    "train": {"epochs": 1, "image_size": 32, "progress": False},
    "infer": {"tta": 1},
}


def _merge(tree: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(tree.get(key), dict):
            _merge(tree[key], value)
        else:
            tree[key] = value
    return tree


def write_recipe(folder: Path, root: str = ".") -> Path:
    """The demo melanoma recipe, scaled down: 2 folds, 1 epoch, 32 px, cache at 32."""
    tree = yaml.safe_load(resources.files("medals.demo").joinpath("demo_melanoma.yaml").read_text())
    _merge(tree, TINY)
    tree["data"]["cache_size"] = 32
    tree["data"]["root"] = root
    recipe = folder / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tree, sort_keys=False))
    return recipe


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("medals: error: "), err
    return lines[0]


def fails(argv: list[str], capsys, run_dir: Path) -> str:
    """Run the CLI in-process; exit 2, one error line, and every file under run_dir unchanged."""
    before = work_hashes(run_dir)
    existed = run_dir.exists()
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own exits (none should remain: they become MedalsError)
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2, err
    line = one_error_line(err)
    assert work_hashes(run_dir) == before
    assert run_dir.exists() == existed
    return line


@pytest.fixture(scope="module")
def competition(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("competition")
    generate_melanoma(folder, n_train=24, n_test=6, size=32, seed=3)
    write_recipe(folder)
    return folder


@pytest.fixture(scope="module")
def finished(competition, tmp_path_factory) -> Path:
    """A finished 2-fold run of the tiny recipe: every stage done (trained once for the module)."""
    import torch

    folder = tmp_path_factory.mktemp("finished")
    # The data stay where they are (never changed: cases that break files copy them), so every copy of
    # this folder resolves to the same data root and its stages stay done.
    write_recipe(folder, root=str(competition))
    cwd, threads = os.getcwd(), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        os.chdir(folder)
        assert main(["run", "recipe.yaml"]) == 0
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    return folder


@pytest.fixture
def fresh(competition, tmp_path, monkeypatch) -> Path:
    """A copy of the competition (no run yet), the working directory."""
    shutil.copytree(competition, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def rerun(finished, tmp_path, monkeypatch) -> Path:
    """A copy of the finished run and its recipe, the working directory."""
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True, symlinks=True)
    # config.yaml records where its recipe was (`source`): the copy's own, as if it had been run here.
    config = tmp_path / "run" / "config.yaml"
    config.write_text(
        config.read_text().replace(str(finished / "recipe.yaml"), str(tmp_path / "recipe.yaml"))
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---- CSV files (fresh competition; prepare's checks come before the run folder exists) -----------------


def _csv(folder: Path, name: str = "train.csv") -> pd.DataFrame:
    return pd.read_csv(folder / name)


def _rewrite(folder: Path, frame: pd.DataFrame, name: str = "train.csv") -> None:
    frame.to_csv(folder / name, index=False)


def drop_train_csv(f: Path) -> list[str]:
    (f / "train.csv").unlink()
    return [str(f / "train.csv"), "does not exist"]


def drop_test_csv(f: Path) -> list[str]:
    (f / "test.csv").unlink()
    return [str(f / "test.csv"), "does not exist"]


def empty_train_csv(f: Path) -> list[str]:
    (f / "train.csv").write_text("")
    return [str(f / "train.csv"), "is empty"]


def header_only_csv(f: Path) -> list[str]:
    (f / "train.csv").write_text((f / "train.csv").read_text().splitlines()[0] + "\n")
    return [str(f / "train.csv"), "no rows"]


def binary_garbage_csv(f: Path) -> list[str]:
    (f / "train.csv").write_bytes(b"image_name,diagnosis\n\xff\xfe\x00\x81bad,\x9c\n")
    return [str(f / "train.csv")]


def duplicate_ids(f: Path) -> list[str]:
    frame = _csv(f)
    frame.loc[3, "image_name"] = frame.loc[2, "image_name"]
    _rewrite(f, frame)
    return ["duplicate ids", frame.loc[2, "image_name"], "image_name"]


def nan_ids(f: Path) -> list[str]:
    frame = _csv(f)
    frame.loc[[1, 4], "image_name"] = np.nan
    _rewrite(f, frame)
    return ["2 rows without a value", "'image_name'"]


def unknown_label(f: Path) -> list[str]:
    frame = _csv(f)
    frame.loc[0, "diagnosis"] = "carcinoma"
    _rewrite(f, frame)
    return ["'carcinoma'", "diagnosis"]


def drop_label_column(f: Path) -> list[str]:
    _rewrite(f, _csv(f).drop(columns=["diagnosis"]))
    return ["'diagnosis'", str(f / "train.csv")]


def drop_group_column(f: Path) -> list[str]:
    _rewrite(f, _csv(f).drop(columns=["patient_id"]))
    return ["'patient_id'"]


def drop_test_id_column(f: Path) -> list[str]:
    _rewrite(f, _csv(f, "test.csv").drop(columns=["image_name"]), "test.csv")
    return ["'image_name'", str(f / "test.csv")]


# ---- images ------------------------------------------------------------------------------------------


def _train_image(f: Path, row: int = 5) -> Path:
    return f / "train" / f"{_csv(f)['image_name'].iloc[row]}.jpg"


def drop_images(f: Path) -> list[str]:
    names = sorted(_csv(f)["image_name"])[:3]
    for name in names:
        (f / "train" / f"{name}.jpg").unlink()
    return ["3 of 30 image files do not exist", names[0]]


def drop_test_image(f: Path) -> list[str]:
    name = _csv(f, "test.csv")["image_name"].iloc[0]
    (f / "test" / f"{name}.jpg").unlink()
    return ["1 of 30 image files do not exist", name]


def corrupt_image(f: Path) -> list[str]:
    path = _train_image(f)
    path.write_bytes(b"this is not a jpeg")
    return [str(path), "corrupt"]


def empty_image(f: Path) -> list[str]:
    path = _train_image(f, 7)
    path.write_bytes(b"")
    return [str(path)]


def image_is_a_folder(f: Path) -> list[str]:
    path = _train_image(f, 2)
    path.unlink()
    path.mkdir()
    return [path.name, "do not exist"]


CSV_AND_IMAGE_CASES: list[tuple[str, Callable[[Path], list[str]], list[str]]] = [
    ("csv-train-missing", drop_train_csv, []),
    ("csv-test-missing", drop_test_csv, []),
    ("csv-empty", empty_train_csv, []),
    ("csv-header-only", header_only_csv, []),
    ("csv-not-text", binary_garbage_csv, []),
    ("csv-duplicate-ids", duplicate_ids, []),
    ("csv-nan-ids", nan_ids, []),
    ("csv-unknown-label", unknown_label, []),
    ("csv-no-label-column", drop_label_column, []),
    ("csv-no-group-column", drop_group_column, []),
    ("csv-test-no-id-column", drop_test_id_column, []),
    ("csv-id-column-key", lambda f: ["'img'"], ["data.id_column=img"]),
    (
        "csv-label-outside-classes",
        lambda f: ["'unknown'", "diagnosis"],
        ["data.classes=[nevus,melanoma,BKL]"],
    ),
    ("csv-binary-with-4-classes", lambda f: ["task binary needs 2 classes"], ["task=binary"]),
    ("csv-query-unknown-column", lambda f: ["data.query", "nosuch"], ["data.query=nosuch > 1"]),
    ("csv-query-keeps-nothing", lambda f: ["no rows after filtering"], ["data.query=age_approx > 1000"]),
    ("csv-keep-reserved-column", lambda f: ["data.keep_columns", "'label'"], ["data.keep_columns=[label]"]),
    ("image-missing", drop_images, []),
    ("image-test-missing", drop_test_image, []),
    ("image-corrupt", corrupt_image, []),
    ("image-empty-file", empty_image, []),
    ("image-is-a-folder", image_is_a_folder, []),
    ("image-template-field", lambda f: ["'nosuch'"], ["data.image_path=train/{nosuch}.jpg"]),
    ("image-channel-without-field", lambda f: ["{channel}"], ["data.channels=[red,green]"]),
]


@pytest.mark.parametrize(
    ("mutate", "overrides"),
    [pytest.param(m, o, id=name) for name, m, o in CSV_AND_IMAGE_CASES],
)
def test_bad_competition_files(fresh, capsys, mutate, overrides):
    expected = mutate(fresh)
    line = fails(["run", "recipe.yaml", *overrides], capsys, fresh / "run")
    for text in expected:
        assert text in line, line
    assert not (fresh / "run").exists()  # a competition that fails prepare's checks leaves no run folder


# ---- images of a shape the model cannot take (a tiny binary competition of PNG/TIFF files) -----------


def image_competition(folder: Path, ext: str, image: Callable[[int], np.ndarray], **data) -> Path:
    """Eight 32 px images train/c<i>.<ext> with labels a/b, and a recipe that reads them."""
    (folder / "train").mkdir(parents=True, exist_ok=True)
    for i in range(8):
        path = folder / "train" / f"c{i}.{ext}"
        pixels = image(i)
        if ext in ("tif", "tiff"):
            import tifffile

            tifffile.imwrite(path, pixels)
        else:
            Image.fromarray(pixels).save(path)
    pd.DataFrame({"id": [f"c{i}" for i in range(8)], "label": ["a", "b"] * 4}).to_csv(
        folder / "train.csv", index=False
    )
    tree = {
        "name": "tiny",
        "task": "binary",
        "data": {
            "label_column": "label",
            "image_path": f"train/{{id}}.{ext}",
            "test_csv": None,
            "sample_submission": None,
            **data,
        },
        "model": {"backbone": "resnet10t"},
    }
    _merge(tree, TINY)
    tree["split"] = {"method": "stratified", "n_folds": 2}
    recipe = folder / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tree))
    return recipe


def _rgb(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8)


IMAGE_SHAPE_CASES = [
    (
        "two-channel-tiff",
        "tif",
        lambda i: np.full((32, 32, 2), 40 + i, np.uint8),
        [],
        ["c0.tif", "2 channels"],
    ),
    (
        "rgb-for-in-chans-4",
        "png",
        _rgb,
        ["model.in_chans=4"],
        ["c0.png", "3 channels", "model.in_chans is 4"],
    ),
    (
        "rgb-for-in-chans-1",
        "png",
        _rgb,
        ["model.in_chans=1"],
        ["c0.png", "3 channels", "model.in_chans is 1"],
    ),
    ("unknown-extension", "gif", _rgb, [], ["unknown extension '.gif'"]),
]


@pytest.mark.parametrize(
    ("ext", "image", "overrides", "expected"),
    [pytest.param(e, im, o, x, id=name) for name, e, im, o, x in IMAGE_SHAPE_CASES],
)
def test_images_the_model_cannot_take(tmp_path, monkeypatch, capsys, ext, image, overrides, expected):
    image_competition(tmp_path, ext, image)
    monkeypatch.chdir(tmp_path)
    line = fails(["run", "recipe.yaml", *overrides], capsys, tmp_path / "run")
    for text in expected:
        assert text in line, line
    assert "cache" not in line  # the source image is named, never a cache file


def test_channel_files_of_different_sizes(tmp_path, monkeypatch, capsys):
    def gray(i: int) -> np.ndarray:
        return np.full((32, 32), 30 * i, np.uint8)

    image_competition(tmp_path, "png", gray)
    for i in range(8):
        for channel, side in (("red", 32), ("green", 16 if i == 3 else 32)):
            Image.fromarray(np.full((side, side), 9, np.uint8)).save(
                tmp_path / "train" / f"c{i}_{channel}.png"
            )
    monkeypatch.chdir(tmp_path)
    overrides = ["data.image_path=train/{id}_{channel}.png", "data.channels=[red,green]", "model.in_chans=2"]
    line = fails(["run", "recipe.yaml", *overrides], capsys, tmp_path / "run")
    assert "differ in size" in line and "c3_green.png" in line


def test_mask_size_differs_from_image(tmp_path, monkeypatch, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(4):
        Image.fromarray(np.full((32, 32), 90, np.uint8)).save(tmp_path / "images" / f"c{i}.png")
        side = 16 if i == 2 else 32
        Image.fromarray(np.zeros((side, side), np.uint8)).save(tmp_path / "masks" / f"c{i}.png")
    pd.DataFrame({"id": [f"c{i}" for i in range(4)]}).to_csv(tmp_path / "train.csv", index=False)
    tree = {
        "name": "seg",
        "task": "segmentation",
        "run_dir": "run",
        "model": {"arch": "unet"},
        "data": {
            "test_csv": None,
            "sample_submission": None,
            "image_path": "images/{id}.png",
            "mask_path": "masks/{id}.png",
        },
    }
    (tmp_path / "seg.yaml").write_text(yaml.safe_dump(tree))
    monkeypatch.chdir(tmp_path)
    line = fails(["prepare", "seg.yaml"], capsys, tmp_path / "run")
    assert "c2.png" in line and "16x16" in line and "32x32" in line


# ---- recipe settings that fail when the recipe loads ---------------------------------------------------

RECIPE_CASES = [
    ("unknown-top-key", ["colour=red"], ["unknown key 'colour'"]),
    ("unknown-nested-key", ["train.epochz=2"], ["unknown key 'train.epochz'"]),
    ("wrong-type-epochs", ["train.epochs=many"], ["'train.epochs'", "'many'"]),
    ("zero-epochs", ["train.epochs=0"], ["'train.epochs'", "0"]),
    ("zero-train-batch", ["train.batch_size=0"], ["'train.batch_size'", "greater than or equal to 1"]),
    ("zero-infer-batch", ["infer.batch_size=0"], ["'infer.batch_size'", "has value 0"]),
    ("negative-infer-batch", ["infer.batch_size=-5"], ["'infer.batch_size'", "has value -5"]),
    ("negative-workers", ["train.num_workers=-1"], ["'train.num_workers'", "-1"]),
    ("one-fold", ["split.n_folds=1"], ["'split.n_folds'", "greater than or equal to 2"]),
    ("tiny-image-size", ["train.image_size=4"], ["'train.image_size'", "4"]),
    ("tta-not-allowed", ["infer.tta=3"], ["'infer.tta'", "3"]),
    ("zero-in-chans", ["model.in_chans=0"], ["'model.in_chans'", "0"]),
    ("zero-lr", ["train.lr=0"], ["'train.lr'", "greater than 0"]),
    ("dropout-above-one", ["model.dropout=1.5"], ["'model.dropout'", "1.5"]),
    ("zero-cache-size", ["data.cache_size=0"], ["'data.cache_size'", "0"]),
    ("negative-fold-list", ["train.folds=[-1]"], ["'train.folds.0'", "-1"]),
    ("unknown-task", ["task=detection"], ["'task'", "'detection'"]),
    ("unknown-checkpoint", ["infer.checkpoint=nosuch"], ["infer.checkpoint 'nosuch'", "best"]),
    ("unknown-arch", ["model.arch=transformer"], ["'model.arch'", "'transformer'"]),
    ("override-without-equals", ["train.epochs"], ["override 'train.epochs' is not of the form"]),
    ("override-empty-key", ["=3"], ["override '=3' has an empty key"]),
    ("override-into-a-value", ["seed.x=1"], ["'seed' is not a section"]),
    (
        "checkpoint-metric-not-computed",
        ["train.checkpoints=[{name: best, metric: rmse}]"],  # a regression metric (qwk is computed now)
        ["train.checkpoints[0].metric 'rmse'", "choose one of", "auc"],
    ),
    ("subsets-query-syntax", ["metrics.subsets.old=age_approx >>"], ["metrics.subsets.old", "age_approx >>"]),
    ("subsets-query-unknown-column", ["metrics.subsets.old=nosuch > 1"], ["metrics.subsets.old", "nosuch"]),
    ("split-query-unknown-column", ["split.query=nosuch == 1"], ["split.query", "nosuch"]),
    ("weights-file-missing", ["model.weights=nope.pt"], ["model.weights file nope.pt does not exist"]),
    ("fold-outside-range", ["train.folds=[5]"], ["train.folds has 5, outside 0..1"]),
]


@pytest.mark.parametrize(
    ("overrides", "expected"), [pytest.param(o, x, id=name) for name, o, x in RECIPE_CASES]
)
def test_bad_recipe_settings_on_a_new_run(fresh, capsys, overrides, expected):
    line = fails(["run", "recipe.yaml", *overrides], capsys, fresh / "run")
    for text in expected:
        assert text in line, line


def test_recipe_files_that_cannot_be_read(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    assert "not valid YAML" in fails(["prepare", "bad.yaml"], capsys, tmp_path / "runs")
    assert "must be a mapping" in fails(["prepare", "list.yaml"], capsys, tmp_path / "runs")
    assert "recipe file nope.yaml does not exist" in fails(["train", "nope.yaml"], capsys, tmp_path / "runs")


# ---- a finished run rerun with a bad setting: refused before any epoch, every file byte-identical -------

RERUN_CASES = [
    (
        "checkpoint-metric-not-computed",
        ["run", "recipe.yaml", "train.checkpoints=[{name: best, metric: rmse}]"],
        ["'rmse'", "auc, accuracy"],
    ),
    (
        "checkpoint-metric-of-unknown-subset",
        ["train", "recipe.yaml", "train.checkpoints=[{name: best, metric: auc_20}]"],
        ["'auc_20'"],
    ),
    (
        "subsets-query-syntax",
        ["run", "recipe.yaml", "metrics.subsets.x=age_approx >>"],
        ["metrics.subsets.x"],
    ),
    (
        "subsets-query-unknown-column",
        ["evaluate", "recipe.yaml", "--force", "metrics.subsets.x=site == 'torso'"],
        ["metrics.subsets.x", "'site'", "table.parquet"],
    ),
    (
        "subsets-query-not-per-row",
        ["run", "recipe.yaml", "metrics.subsets.x=1 + 1"],
        ["one true/false value"],
    ),
    ("split-train-only-syntax", ["run", "recipe.yaml", "split.train_only=fold ="], ["split.train_only"]),
    ("fold-flag-outside-range", ["train", "recipe.yaml", "--fold", "5"], ["train.folds has 5, outside 0..1"]),
    (
        "weights-file-missing",
        ["run", "recipe.yaml", "model.weights=gone.pth"],
        ["model.weights file gone.pth"],
    ),
    (
        "in-chans-changed-after-prepare",
        ["train", "recipe.yaml", "model.in_chans=4"],
        ["3 channels but model.in_chans is 4", "train/ISIC_"],
    ),
]


@pytest.mark.parametrize(("argv", "expected"), [pytest.param(a, x, id=name) for name, a, x in RERUN_CASES])
def test_rerun_of_a_finished_run_is_refused_before_any_work(rerun, capsys, argv, expected):
    line = fails(argv, capsys, rerun / "run")
    for text in expected:
        assert text in line, line
    assert ".npy" not in line  # a source image, never the cache file


def _offline_hub(monkeypatch, tmp_path: Path) -> None:
    """An empty hub cache and a hub that refuses connections (port 9 on this machine: nothing listens)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def test_pretrained_without_cache_or_network_on_a_finished_run(rerun, tmp_path, monkeypatch, capsys):
    _offline_hub(monkeypatch, tmp_path)
    line = fails(["run", "recipe.yaml", "model.pretrained=true"], capsys, rerun / "run")
    assert line.startswith("medals: error: model.pretrained: ")
    assert "resnet10t" in line and "127.0.0.1 cannot be reached" in line and "model.weights" in line


def test_pretrained_with_hub_offline_on_a_new_run(fresh, tmp_path, monkeypatch, capsys):
    _offline_hub(monkeypatch, tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = fails(["run", "recipe.yaml", "model.pretrained=true"], capsys, fresh / "run")
    assert "model.pretrained" in line and "HF_HUB_OFFLINE" in line


def test_pretrained_no_network_subprocess_is_fast(competition, tmp_path):
    """The real command with no cached weights and no hub: one sentence, long before any hub retry."""
    shutil.copytree(competition, tmp_path, dirs_exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "TORCH_HOME": str(tmp_path / "torch"),
        "HF_ENDPOINT": "http://127.0.0.1:9",
    }
    env.pop("HF_HUB_OFFLINE", None)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "medals", "run", "recipe.yaml", "model.pretrained=true"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,  # generous: the process imports torch and timm; the hub's retries took 55 s
    )
    seconds = time.perf_counter() - started
    assert done.returncode == 2, done.stderr
    assert "model.pretrained" in one_error_line(done.stderr)
    assert not (tmp_path / "run").exists()
    print(f"pretrained check, whole process: {seconds:.1f} s")


# ---- the command line ---------------------------------------------------------------------------------

CLI_CASES = [
    ("unknown-verb", ["trian", "recipe.yaml"], ["invalid choice: 'trian'"]),
    ("no-verb", [], ["required: VERB"]),
    ("no-recipe", ["train"], ["required: recipe"]),
    ("fold-not-a-number", ["train", "recipe.yaml", "--fold", "x"], ["--fold", "'x'"]),
    ("unknown-option", ["train", "recipe.yaml", "--folds", "1"], ["unrecognized arguments: --folds"]),
    ("force-unknown-stage", ["run", "recipe.yaml", "--force", "trian"], ["--force trian: not a stage"]),
    (
        "bad-override-after-fold",
        ["train", "recipe.yaml", "--fold", "0", "train.epochs=x"],
        ["'train.epochs'"],
    ),
    ("word-after-fold", ["train", "recipe.yaml", "--fold", "0", "epochs"], ["override 'epochs'"]),
    ("unknown-compare-folder", ["compare", "nowhere"], ["nowhere"]),
    ("report-not-a-run", ["report", "."], ["not a medals run folder"]),
    (
        "ensemble-bad-weights",
        ["ensemble", "recipe.yaml", "recipe.yaml", "--weights", "1,x"],
        ["--weights '1,x'"],
    ),
]


@pytest.mark.parametrize(("argv", "expected"), [pytest.param(a, x, id=name) for name, a, x in CLI_CASES])
def test_bad_command_lines(rerun, capsys, argv, expected):
    line = fails(argv, capsys, rerun / "run")
    for text in expected:
        assert text in line, line


def test_overrides_after_fold_are_overrides(rerun, capsys):
    """`medals train R --fold 0 KEY=VALUE`, the README's form: the override applies (here a wrong value
    is refused by name, which it could only be if it was read as an override)."""
    line = fails(["train", "recipe.yaml", "--fold", "1", "infer.batch_size=0"], capsys, rerun / "run")
    assert "'infer.batch_size' has value 0" in line and "train.folds=[1]" in line


# ---- OS faults: one sentence naming the path, nothing lost, a rerun after the fix finishes ---------------


def _can_mount_read_only(folder: Path) -> bool:
    probe = subprocess.run(
        [
            "unshare",
            "-rm",
            "sh",
            "-c",
            f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} {folder}",
        ],
        capture_output=True,
    )
    return probe.returncode == 0


def test_read_only_run_folder(rerun, finished):
    run = rerun / "run"
    (run / "submission.csv").unlink()  # a submission to write again: the stage is forced below
    if shutil.which("unshare") is None or not _can_mount_read_only(run):
        pytest.skip("no private mount namespace here (unshare -rm) for a read-only bind mount")
    before = work_hashes(run)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = (
        f"mount --bind {run} {run} && mount -o remount,bind,ro {run} {run} && "
        f"exec {sys.executable} -m medals submit recipe.yaml --force"
    )
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        cwd=rerun,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    line = one_error_line(done.stderr)
    # The first file the run writes is its lock's holder record: the sentence names that path.
    assert "read-only" in line and f"{Path('run')}{os.sep}" in line
    assert work_hashes(run) == before
    # The fix (a writable folder again): the same command finishes the work, the submission as before.
    fixed = subprocess.run(
        [sys.executable, "-m", "medals", "submit", "recipe.yaml", "--force"],
        cwd=rerun,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fixed.returncode == 0, fixed.stderr
    assert (run / "submission.csv").read_bytes() == (finished / "run" / "submission.csv").read_bytes()


@pytest.mark.parametrize(
    ("code", "text"),
    [
        pytest.param(errno.ENOSPC, "no space left on the device", id="disk-full"),
        pytest.param(errno.EDQUOT, "disk quota", id="quota"),
        pytest.param(errno.EROFS, "read-only", id="read-only-in-process"),
    ],
)
def test_write_refused_by_the_disk(rerun, finished, monkeypatch, capsys, code, text):
    """The rename that ends an atomic write fails as a full disk fails it: the old file stays."""
    import medals.files

    real = os.replace

    def refuse(src, dst):
        raise OSError(code, os.strerror(code), str(dst))

    (rerun / "run" / "submission.csv").write_text("an older submission\n")
    monkeypatch.setattr(medals.files.os, "replace", refuse)
    line = fails(["submit", "recipe.yaml", "--force"], capsys, rerun / "run")
    # The first write of a forced submit is its reopened stamp: the sentence names the file it writes.
    assert text in line and f"{Path('run')}{os.sep}" in line
    assert (rerun / "run" / "submission.csv").read_text() == "an older submission\n"
    assert not list((rerun / "run").glob(".submission.csv.*.tmp"))  # the temporary file is removed
    monkeypatch.setattr(medals.files.os, "replace", real)
    assert main(["submit", "recipe.yaml", "--force"]) == 0
    assert (rerun / "run" / "submission.csv").read_bytes() == (
        finished / "run" / "submission.csv"
    ).read_bytes()


def test_permission_denied_creating_a_file(rerun, monkeypatch, capsys):
    import medals.files

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(dir))

    monkeypatch.setattr(medals.files.tempfile, "mkstemp", refuse)
    line = fails(["submit", "recipe.yaml", "--force"], capsys, rerun / "run")
    assert "permission denied" in line and f"{Path('run')}{os.sep}" in line


def test_unwritable_output_outside_medals_files(rerun, monkeypatch, capsys):
    """A library's own write (here the report page's folder) refused: the CLI's net says it in one line."""
    import medals.stages.report

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(rerun / "run" / "report.html"))

    monkeypatch.setattr(medals.stages.report, "write_text", refuse)
    (rerun / "run" / "report.html").unlink()  # an unchanged page is not written again
    line = fails(["report", "run"], capsys, rerun / "run")
    assert "cannot use" in line and "report.html" in line and "permission denied" in line


# ---- the names the checks accept are the names training computes ---------------------------------------


def test_checkpoint_metric_names_are_the_logged_columns(finished):
    from medals.config import load_recipe
    from medals.train.metric_names import epoch_metric_names

    recipe = load_recipe(finished / "recipe.yaml")
    logged = pd.read_csv(finished / "run" / "fold0" / "log.csv").columns
    computed = [c for c in logged if c not in ("epoch", "lr", "seconds", "images_per_s", "data_wait")]
    assert sorted(computed) == sorted(epoch_metric_names(recipe))

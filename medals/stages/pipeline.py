"""Runs stages in order, skipping those already done for the same resolved config.

Each stage leaves a stamp (stages/<name>.json) with the digest of the config sections it reads and
whether it finished. A finished stamp with the same digest means "skip"; a different digest means the
stage's old outputs are stale and the stage runs again from scratch. An unfinished stamp with the same
digest means the stage was interrupted: it runs again, and training resumes from its checkpoints.

Under torchrun (several ranks) train, evaluate and predict run on every rank, each doing its share of
the work (medals.runtime.sharding). The other stages (prepare, split, search, submit) run on rank 0 alone
while the others wait for it (medals.runtime.distributed.run_on_main): they read and write files, or
train search candidates one after another, and would gain nothing from more ranks. Rank 0 reads the
stamps and tells the others what it found, and writes every stamp and file.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from functools import partial

from medals.config import Recipe, digest_train, dump_recipe
from medals.config.data import digest_data
from medals.errors import MedalsError
from medals.files import read_json, write_json, write_text
from medals.runtime.distributed import run_on_main
from medals.stages.common import say
from medals.stages.layout import RunLayout

# Stages that share their work over the ranks under torchrun; the others run on rank 0 alone.
DISTRIBUTED_STAGES = ("train", "evaluate", "predict")

STAGES = ("prepare", "split", "search", "train", "evaluate", "predict", "submit")

# Config sections each stage's output depends on (directly or through earlier stages).
_INPUTS = {
    "prepare": ("task", "data"),
    "split": ("task", "data", "split", "seed"),
    "search": ("task", "data", "split", "seed", "model", "loss", "train", "policy_search"),
    "train": ("task", "data", "split", "seed", "model", "loss", "train", "metrics"),
    "evaluate": ("task", "data", "split", "seed", "model", "loss", "train", "metrics", "infer"),
    "predict": ("task", "data", "split", "seed", "model", "loss", "train", "infer"),
    "submit": ("task", "data", "split", "seed", "model", "loss", "train", "metrics", "infer", "submit"),
}


def stage_digest(recipe: Recipe, stage: str) -> str:
    dumped = recipe.model_dump(mode="json")
    payload = {name: dumped[name] for name in _INPUTS[stage]}
    payload["data"] = digest_data(payload["data"])  # every stage reads data
    payload["data_root"] = str(recipe.data_root)
    if stage == "prepare":
        payload["normalize"] = recipe.train.normalize  # "dataset" makes prepare measure channel stats
    if stage == "search":
        # The candidates bring their own augmentation, epochs and no SWA; the policies file the search
        # writes (read through train.augment) is its output, not its input.
        if recipe.policy_search is None:
            return hashlib.sha256(b"no policy search").hexdigest()[:16]
        payload["train"] = digest_train(payload["train"], "augment", "epochs", "swa", "folds")
    elif "train" in payload:
        # Progress bars and loader workers change nothing in the results.
        payload["train"] = digest_train(payload["train"])
        # Files the augmentation reads (policies) are inputs of training too.
        from medals.train.loop import augment_files_digest

        payload["augment_files"] = augment_files_digest(recipe)
        if stage == "train":
            # Folds may be trained as separate jobs (train.folds=[k]): each fold keeps its own
            # checkpoints, so choosing folds must not invalidate the others.
            payload["train"].pop("folds")
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stamp(layout: RunLayout, stage: str):
    return layout.stamps / f"{stage}.json"


def stage_state(recipe: Recipe, layout: RunLayout, stage: str, digest: str | None = None) -> str:
    """'done', 'interrupted', 'stale' or 'new'; `digest` is stage_digest(recipe, stage) if known."""
    path = _stamp(layout, stage)
    if not path.exists():
        return "new"
    stamp = read_json(path)
    if stamp.get("digest") != (digest or stage_digest(recipe, stage)):
        return "stale"
    return "done" if stamp.get("done") else "interrupted"


def with_dataset_stats(recipe: Recipe, layout: RunLayout) -> Recipe:
    """train.normalize 'dataset': the recipe with the mean/std that prepare measured filled in."""
    if recipe.train.normalize != "dataset":
        return recipe
    if not layout.channel_stats.exists():
        raise MedalsError(
            f"{layout.channel_stats} does not exist: run `medals prepare` for this recipe first"
        )
    stats = read_json(layout.channel_stats)
    train = recipe.train.model_copy(update={"normalize": "fixed", "mean": stats["mean"], "std": stats["std"]})
    return recipe.model_copy(update={"train": train})


def _run_stage(recipe: Recipe, layout: RunLayout, stage: str, device) -> None:
    if stage != "prepare":
        recipe = with_dataset_stats(recipe, layout)
    from medals.stages.evaluate import run_evaluate
    from medals.stages.predict import run_predict
    from medals.stages.prepare import run_prepare
    from medals.stages.search import run_search
    from medals.stages.split import run_split
    from medals.stages.submit import run_submit
    from medals.stages.train import run_train

    actions: dict[str, Callable[[], object]] = {
        "prepare": lambda: run_prepare(recipe, layout),
        "split": lambda: run_split(recipe, layout),
        "search": lambda: run_search(recipe, layout, device),
        "train": lambda: run_train(recipe, layout, device),
        "evaluate": lambda: run_evaluate(recipe, layout, device),
        "predict": lambda: run_predict(recipe, layout, device),
        "submit": lambda: run_submit(recipe, layout),
    }
    if stage in DISTRIBUTED_STAGES:
        actions[stage]()
    else:
        run_on_main(actions[stage])


def run_stages(
    recipe: Recipe,
    stages: Iterable[str],
    device,
    force: Iterable[str] = (),
) -> RunLayout:
    """Run the given stages in pipeline order; skip finished ones unless forced."""
    force = set(force)
    unknown = force - set(STAGES)
    if unknown:
        raise MedalsError(f"--force {sorted(unknown)[0]}: not a stage; stages are {', '.join(STAGES)}")
    layout = RunLayout(recipe.run_path)
    run_on_main(partial(_write_config, recipe, layout))
    wanted = set(stages)
    for stage in STAGES:
        if stage not in wanted:
            continue
        # One digest per stage, and two round trips to rank 0: open the stage, then mark it done.
        digest = stage_digest(recipe, stage)
        forced = stage in force
        then_submit = "submit" in wanted
        state = run_on_main(partial(_open_stage, recipe, layout, stage, digest, forced, device, then_submit))
        if _skipped(stage, state, forced):
            say(f"{stage}: already done for this config, skipped (--force {stage} redoes it)")
            continue
        started = time.perf_counter()
        _run_stage(recipe, layout, stage, device)
        seconds = round(time.perf_counter() - started, 3)
        if state != "done":
            run_on_main(partial(_mark, layout, stage, digest, True, seconds))
    return layout


def _write_config(recipe: Recipe, layout: RunLayout) -> None:
    layout.root.mkdir(parents=True, exist_ok=True)
    resolved = dump_recipe(recipe)
    if not layout.config.exists() or layout.config.read_text() != resolved:
        write_text(layout.config, resolved)


def _skipped(stage: str, state: str, forced: bool) -> bool:
    # Training is never skipped wholesale: each fold skips itself when its final.pt exists,
    # so a run that asks for more folds than before trains just the missing ones.
    return state == "done" and not forced and stage != "train"


def _open_stage(
    recipe: Recipe,
    layout: RunLayout,
    stage: str,
    digest: str,
    forced: bool,
    device,
    then_submit: bool = False,
) -> str:
    """On rank 0: the stage's state and, unless it is skipped, its stamp opened (stale folds cleared).

    Before training that is not done, everything that can fail without training is checked (the model,
    data path, transforms, weights file; with submit to follow, the sample submission against the test
    table), so a recipe that cannot finish stops in seconds with its sentence.
    """
    state = stage_state(recipe, layout, stage, digest)
    if stage == "train" and state != "done":
        from medals.stages.submit import check_sample_submission
        from medals.stages.train import check_train

        if then_submit:
            check_sample_submission(recipe, layout)
        check_train(with_dataset_stats(recipe, layout), layout, device)
    if not _skipped(stage, state, forced):
        clear = stage == "train" and (state == "stale" or forced)
        _begin(recipe, layout, stage, state, digest, clear, device)
    return state


def _begin(
    recipe: Recipe, layout: RunLayout, stage: str, state: str, digest: str, clear: bool, device
) -> None:
    from medals.stages.train import check_train, clear_train

    if clear:
        # Nothing is lost to a recipe that cannot train: its error comes before the old folds go.
        if state == "done":  # (not done: _open_stage checked it already)
            check_train(with_dataset_stats(recipe, layout), layout, device)
        clear_train(recipe, layout)
    if state != "done":
        _mark(layout, stage, digest, False)


def _mark(layout: RunLayout, stage: str, digest: str, done: bool, seconds: float | None = None) -> None:
    """The stage's stamp; a finished one also says how long the stage took (`medals compare` shows it)."""
    stamp = {"digest": digest, "done": done}
    if seconds is not None:
        stamp["seconds"] = seconds
    write_json(_stamp(layout, stage), stamp)

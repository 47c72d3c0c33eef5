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

A finished stamp also records the stage's outputs and the signatures of the earlier stages it read
(medals.stages.outputs): a finished stage whose outputs were changed or truncated, or whose inputs were
redone since, runs again, saying why in one sentence. Each stage runs under the run folder's locks
(medals.stages.locks), taken when it opens and dropped after its stamp; training never deletes a fold:
folds of another config are moved aside and brought back when that config returns (medals.stages.aside).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

from medals.config import Recipe, digest_train, dump_recipe
from medals.config.infer import LATER_METRICS_DEFAULTS, without_later_defaults
from medals.config.submit import LATER_SUBMIT_DEFAULTS
from medals.errors import MedalsError
from medals.files import read_json, write_json, write_text
from medals.runtime.distributed import on_main, run_on_main
from medals.stages.common import fold_ids, say
from medals.stages.layout import RunLayout
from medals.stages.locks import StageLock
from medals.stages.outputs import READS, changed, record, signature

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
    payload["data_root"] = str(recipe.data_root)
    for section, later in (("metrics", LATER_METRICS_DEFAULTS), ("submit", LATER_SUBMIT_DEFAULTS)):
        if section in payload:  # keys added later are digested only when set, so old runs stay valid
            payload[section] = without_later_defaults(payload[section], later)
    if stage == "prepare":
        payload["normalize"] = recipe.train.normalize  # "dataset" makes prepare measure channel stats
    if stage == "search":
        # The candidates bring their own augmentation, epochs and no SWA; the policies file the search
        # writes (read through train.augment) is its output, not its input.
        if recipe.policy_search is None:
            return hashlib.sha256(b"no policy search").hexdigest()[:16]
        payload["train"] = digest_train(payload["train"], "augment", "epochs", "swa", "folds")
        from medals.stages.search import base_augment

        payload["search_base"] = base_augment(recipe)  # what every candidate trains with first
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


@dataclass(frozen=True)
class Check:
    """A stage's state: 'done', 'interrupted', 'stale', 'changed' (a finished stage's outputs are not
    what it left) or 'new'; why, when that needs saying; the stamp read; the outputs that changed."""

    state: str
    reason: str | None = None
    stamp: dict | None = None
    changed: tuple[str, ...] = ()


def read_stamp(layout: RunLayout, stage: str) -> dict | None:
    """The stage's stamp, None when there is none or it does not parse (the stage is then redone)."""
    path = _stamp(layout, stage)
    if not path.is_file():
        return None
    try:
        stamp = read_json(path)
    except MedalsError:
        return None
    return stamp if isinstance(stamp, dict) else None


def stage_check(recipe: Recipe, layout: RunLayout, stage: str, digest: str | None = None) -> Check:
    path = _stamp(layout, stage)
    if not path.exists():
        return Check("new")
    stamp = read_stamp(layout, stage)
    if stamp is None:
        return Check("new", f"{path} is corrupt (empty or not a stamp): redoing {stage}")
    if stamp.get("digest") != (digest or stage_digest(recipe, stage)):
        return Check("stale", stamp=stamp)
    if not stamp.get("done"):
        return Check("interrupted", stamp=stamp)
    bad = tuple(changed(layout, stamp.get("outputs", {})))
    if bad:
        more = f" (and {len(bad) - 1} more of its files)" if len(bad) > 1 else ""
        reason = (
            f"{layout.root / bad[0]}{more} was changed or truncated since {stage} finished: redoing {stage}"
        )
        return Check("changed", reason, stamp, bad)
    earlier = _redone_before(layout, stamp)
    if earlier is not None:
        return Check(
            "stale", f"{earlier} was redone or reopened since {stage} finished: redoing {stage}", stamp
        )
    return Check("done", stamp=stamp)


def _redone_before(layout: RunLayout, stamp: dict) -> str | None:
    """The first earlier stage, read by this stamp's stage directly or through others, that was redone
    or reopened since (its signature is not the one recorded); None when all are as they were.

    An earlier stage unfinished when this one ran (recorded None) is not compared: nothing was read from it.
    """
    for earlier, recorded in stamp.get("inputs", {}).items():
        if recorded is None:
            continue
        before = read_stamp(layout, earlier)
        if signature(before) != recorded:
            return earlier
        further = _redone_before(layout, before)
        if further is not None:
            return further
    return None


def still_finished(layout: RunLayout, stage: str) -> bool:
    """Finished (for whatever config it ran) with its outputs intact and its inputs not redone since:
    what `medals report` calls done, without a recipe to compute digests from."""
    stamp = read_stamp(layout, stage)
    if not stamp or not stamp.get("done") or changed(layout, stamp.get("outputs", {})):
        return False
    return _redone_before(layout, stamp) is None


def stage_state(recipe: Recipe, layout: RunLayout, stage: str, digest: str | None = None) -> str:
    """'done', 'interrupted', 'stale', 'changed' or 'new'; `digest` is stage_digest(recipe, stage) if known."""
    return stage_check(recipe, layout, stage, digest).state


def with_dataset_stats(recipe: Recipe, layout: RunLayout) -> Recipe:
    """train.normalize 'dataset': the recipe with the mean/std that prepare measured filled in."""
    if recipe.train.normalize != "dataset":
        return recipe
    if not layout.channel_stats.exists():
        raise MedalsError(
            f"{layout.channel_stats} does not exist: run `medals prepare` for this recipe first"
        )
    stats = read_json(layout.channel_stats, layout.redo_hint(layout.channel_stats))
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
    wait: bool = False,
) -> RunLayout:
    """Run the given stages in pipeline order; skip finished ones unless forced.

    Each stage holds its locks from opening to its stamp; with ``wait`` a stage whose run folder or
    folds another launch holds waits for them instead of stopping with the holder's name."""
    force = set(force)
    unknown = force - set(STAGES)
    if unknown:
        raise MedalsError(f"--force {sorted(unknown)[0]}: not a stage; stages are {', '.join(STAGES)}")
    layout = RunLayout(recipe.run_path)
    wanted = set(stages)
    # Nothing runs before prepare, so its digest, which the checks need, holds for the loop too.
    digests = {"prepare": stage_digest(recipe, "prepare")} if "prepare" in wanted else {}
    # Every check that needs no work, in one round trip: a bad setting changes nothing. config.yaml is
    # written as each stage opens, under its lock.
    run_on_main(partial(_check, recipe, layout, wanted, force, digests))
    new_folder = not layout.root.exists()
    stage = None
    try:
        for stage in STAGES:
            if stage not in wanted:
                continue
            # One digest per stage, and two round trips to rank 0: open the stage (lock it, write the config,
            # read its stamp), then mark it done (and unlock it).
            digest = digests.get(stage) or stage_digest(recipe, stage)
            forced = stage in force
            then_submit = "submit" in wanted
            lock = StageLock(layout, stage, fold_ids(recipe) if stage == "train" else [], wait)
            try:
                state = run_on_main(
                    partial(_open_stage, recipe, layout, stage, digest, forced, device, then_submit, lock)
                )
                if _skipped(stage, state, forced):
                    say(f"{stage}: already done for this config, skipped (--force {stage} redoes it)")
                    continue
                started = time.perf_counter()
                _run_stage(recipe, layout, stage, device)
                seconds = round(time.perf_counter() - started, 3)
                # Marked whenever it ran (forced, or train adding folds): the stamp lists what it wrote.
                run_on_main(
                    partial(_mark, layout, stage, digest, True, seconds, _named_outputs(recipe, stage))
                )
            finally:
                on_main(lock.release)()
    except MedalsError:
        # A competition whose CSVs or images fail prepare leaves no run folder behind: everything in a
        # folder this launch made for it (config, lock, the unfinished stamp, cache files) goes again.
        if new_folder and stage == "prepare":
            on_main(partial(shutil.rmtree, layout.root, ignore_errors=True))()
        raise
    return layout


def check_stages(recipe: Recipe, layout: RunLayout, stages: Iterable[str], force: Iterable[str] = ()) -> None:
    """medals.stages.checks.check_before_work for these stages (on rank 0); writes nothing."""
    from medals.stages.checks import check_before_work

    check_before_work(recipe, layout, set(stages), partial(stage_state, recipe, layout), set(force))


def _check(
    recipe: Recipe, layout: RunLayout, wanted: set[str], force: set[str], digests: dict[str, str]
) -> None:
    """Every check that needs no work (medals.stages.checks), before any stage locks or writes anything."""
    from medals.stages.checks import check_before_work

    def state(stage: str) -> str:
        return stage_state(recipe, layout, stage, digests.get(stage))

    check_before_work(recipe, layout, wanted, state, force)


def _named_outputs(recipe: Recipe, stage: str) -> tuple[str, ...]:
    """The run files a stage writes under names the recipe gives them."""
    if stage == "search" and recipe.policy_search is not None:
        return (recipe.policy_search.file,)
    if stage == "submit":
        return (recipe.submit.file,)
    return ()


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
    lock: StageLock | None = None,
) -> str:
    """On rank 0: the stage locked, the config written, the stage's state and, unless it is skipped, its
    stamp opened (folds of another config moved aside, those of this config brought back).

    Before training that is not done, everything that can fail without training is checked (the model,
    data path, transforms, weights file; with submit to follow, the sample submission against the test
    table), so a recipe that cannot finish stops in seconds with its sentence.
    """
    if lock is not None:
        lock.acquire()
    _write_config(recipe, layout)
    check = stage_check(recipe, layout, stage, digest)
    state = check.state
    if check.reason:
        say(check.reason)
    if stage == "train" and state != "done":
        from medals.stages.submit import check_sample_submission
        from medals.stages.train import check_train

        if then_submit:
            check_sample_submission(recipe, layout)
        check_train(with_dataset_stats(recipe, layout), layout, device)
    if not _skipped(stage, state, forced):
        _begin(recipe, layout, check, stage, digest, forced, device, lock)
    return state


def _begin(
    recipe: Recipe,
    layout: RunLayout,
    check: Check,
    stage: str,
    digest: str,
    forced: bool,
    device,
    lock: StageLock | None,
) -> None:
    from medals.stages.train import check_train, place_folds

    if stage == "train":
        if forced and check.state == "done":  # (not done: _open_stage checked it already)
            check_train(with_dataset_stats(recipe, layout), layout, device)
        previous = (check.stamp or {}).get("digest") or digest
        place_folds(with_dataset_stats(recipe, layout), layout, lock, check, previous, forced)
    if check.state != "done" or forced:
        _mark(layout, stage, digest, False)  # reopened: what read its old outputs is stale from now on


def _mark(
    layout: RunLayout,
    stage: str,
    digest: str,
    done: bool,
    seconds: float | None = None,
    named: tuple[str, ...] = (),
) -> None:
    """The stage's stamp; a finished one also says how long the stage took (`medals compare` shows it),
    what it wrote (sizes, checksums) and the signatures of the earlier stages it read."""
    stamp: dict = {"digest": digest, "done": done}
    if seconds is not None:
        stamp["seconds"] = seconds
    if done:
        stamp["outputs"] = record(layout, stage, named)
        stamp["inputs"] = {earlier: signature(read_stamp(layout, earlier)) for earlier in READS[stage]}
        old = read_stamp(layout, stage) or {}
        if old.get("done") and all(old.get(key) == stamp[key] for key in ("digest", "outputs", "inputs")):
            return  # train finding every fold finished: the stamp (and the time it took) stays as it was
    write_json(_stamp(layout, stage), stamp)

"""search: HPA3's augmentation-policy search, run before training when the recipe has policy_search.

Each candidate policy trains the recipe (with policy_search.overrides applied, e.g. a ResNet18 at 256 px)
for policy_search.epochs on fold policy_search.fold, with the dihedral flips plus the candidate as its
augmentation; the best policy_search.keep policies are written to <run dir>/<policy_search.file>, which
train.augment reads as {name: PolicyFile, path: "{run_dir}/policies.json"}. Candidates train in
<run dir>/search/candidate-<training hash>, so an interrupted search resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medals.augment.policy import HPA3_OPS, Policy, policy_to_spec, random_policy, rank_key, write_policies
from medals.config import Recipe, apply_override, recipe_from_dict
from medals.config.metric_names import metric_direction
from medals.errors import MedalsError
from medals.stages.common import positive_index, read_labels, say, train_rows_with_folds
from medals.stages.layout import RunLayout


def policies_path(recipe: Recipe, layout: RunLayout) -> Path:
    """Where the search writes its policies (policy_search.file, relative to the run directory)."""
    if recipe.policy_search is None:
        raise MedalsError("the recipe has no policy_search")
    return layout.in_run(recipe.policy_search.file)


def candidate_recipe(recipe: Recipe) -> Recipe:
    """The recipe the candidates train: policy_search.overrides applied, no SWA, no fold choice."""
    cfg = recipe.policy_search
    if cfg is None:
        raise MedalsError("the recipe has no policy_search")
    tree = recipe.model_dump(mode="json")
    tree["policy_search"] = None
    tree["train"].update(swa=None, folds=None, epochs=cfg.epochs)
    drop_swa_checkpoint(tree)
    for key, value in cfg.overrides.items():
        parts = str(key).split(".")
        if not key or any(not part for part in parts):
            raise MedalsError(f"policy_search.overrides key '{key}' is not a dotted recipe key")
        if parts[0] == "policy_search":
            raise MedalsError(f"policy_search.overrides key '{key}' cannot change the search itself")
        apply_override(tree, parts, value)
    return recipe_from_dict(tree, f"policy_search.overrides {cfg.overrides}")


def drop_swa_checkpoint(tree: dict) -> None:
    """Without train.swa there is no swa.pt: a candidate that would predict from it uses final.pt."""
    if tree["infer"]["checkpoint"] == "swa":
        tree["infer"]["checkpoint"] = "final"


def _uses_file(recipe: Recipe, path: Path) -> bool:
    from medals.augment.cpu import policy_files, recipe_augment

    return any(used.resolve() == path.resolve() for used in policy_files(recipe_augment(recipe)))


def _describe(policy) -> str:
    return " | ".join(
        " + ".join(f"{step.op}(p={step.p:g}, m={step.magnitude:g})" for step in sub) for sub in policy
    )


def run_search(recipe: Recipe, layout: RunLayout, device) -> None:

    cfg = recipe.policy_search
    if cfg is None:
        say("search: no policy_search in the recipe, nothing to do")
        return
    if cfg.fold >= recipe.split.n_folds:
        raise MedalsError(f"policy_search.fold {cfg.fold} is outside 0..{recipe.split.n_folds - 1}")
    if cfg.keep > cfg.candidates:
        raise MedalsError(f"policy_search.keep ({cfg.keep}) is more than policy_search.candidates")
    candidate = candidate_recipe(recipe)
    rows = train_rows_with_folds(layout)
    labels = read_labels(layout)
    out = policies_path(recipe, layout)
    work = layout.search_dir
    score_fn = default_score_fn(
        candidate,
        rows,
        cfg.fold,
        work,
        cfg.epochs,
        device=device,
        num_classes=labels["num_classes"],
        positive=positive_index(candidate, labels["classes"]),
        base_augment=base_augment(recipe),
    )
    seed = recipe.seed if cfg.seed is None else cfg.seed
    say(
        f"search: {cfg.candidates} candidates of {cfg.subpolicies} sub-policies, {cfg.epochs} epoch(s) each "
        f"on fold {cfg.fold} ({candidate.model.backbone} at {candidate.train.image_size} px), keeping "
        f"{cfg.keep}"
    )
    # Progress goes to a file in the work folder; the policies file appears only when the search is done,
    # so training never reads the best-so-far of an interrupted search.
    kept = search_policies(
        score_fn,
        cfg.candidates,
        cfg.subpolicies,
        cfg.keep,
        seed,
        path=work / "policies.partial.json",
        sampler=cfg.sampler,
    )
    write_policies(out, kept)
    for rank, (score, policy) in enumerate(kept, 1):
        say(f"search: kept #{rank} score {score:.4g}: {_describe(policy)}")
    say(f"search: best {candidate.main_metric} {kept[0][0]:.4g}; {len(kept)} policies written to {out}")
    if not _uses_file(recipe, out):
        say(
            f"search: note: train.augment has no PolicyFile reading {out}; add "
            f'{{name: PolicyFile, path: "{{run_dir}}/{cfg.file}"}} to train with the found policies'
        )


def search_policies(
    score_fn: Callable[[Policy], float],
    n_candidates: int = 50,
    n_subpolicies: int = 5,
    keep: int = 5,
    seed: int = 0,
    *,
    ops: Sequence[str] = HPA3_OPS,
    path: str | Path | None = None,
    sampler: str = "hpa3",
) -> list[tuple[float, Policy]]:
    """Score n_candidates random policies; the best `keep` as (score, policy), best first.

    score_fn(policy) -> float, higher is better (NaN counts as worst). With `path`, the kept policies
    are written (write_policies) after every candidate, so an interrupted search leaves its best so far.
    """
    if n_candidates < 1 or keep < 1 or n_subpolicies < 1:
        raise MedalsError("n_candidates, n_subpolicies and keep must be at least 1")
    rng = np.random.default_rng(seed)
    policies: list[Policy] = []
    scores: list[float] = []
    kept: list[tuple[float, Policy]] = []
    for i in range(n_candidates):
        policy = random_policy(rng, n_subpolicies, ops, sampler)
        score = float(score_fn(policy))
        policies.append(policy)
        scores.append(score)
        order = sorted(enumerate(scores), key=rank_key)[:keep]
        kept = [(scores[j], policies[j]) for j, _ in order]
        if path is not None:
            write_policies(path, kept)
        print(f"policy search: candidate {i + 1}/{n_candidates} scored {score:.4g} (best {kept[0][0]:.4g})")
    return kept


DIHEDRAL = [
    {"name": "HorizontalFlip", "p": 0.5},
    {"name": "VerticalFlip", "p": 0.5},
    {"name": "Transpose", "p": 0.5},
]


def base_augment(recipe: Recipe) -> list[dict[str, Any]]:
    """What the candidates train with before their policy: the recipe's train.augment without its
    PolicyFile ops (HPA3: its own dihedral base, as the seed's search shared policy_transform's), or
    the dihedral flips when the recipe gives no list."""
    if recipe.train.augment is None:
        return DIHEDRAL
    return [op for op in recipe.train.augment if op.get("name") != "PolicyFile"]


def default_score_fn(
    recipe,
    table,
    fold: int,
    work_dir: str | Path,
    epochs: int,
    *,
    device: str = "cpu",
    num_classes: int | None = None,
    positive: int | None = None,
    metric: str | None = None,
    base_augment: list[dict[str, Any]] | None = None,
) -> Callable[[Policy], float]:
    """A score_fn for search_policies: train `recipe` on one fold with the candidate, return its metric.

    The candidate's train.augment is base_augment (default: the dihedral flips, as in HPA3) followed by
    policy_to_spec(policy); train.epochs is `epochs` and train.swa is dropped. Each candidate trains in
    its own folder work_dir/candidate-<training hash>, so a re-run search (same seed) reuses finished
    candidates instead of training them again. The score is `metric` (default: the recipe's main
    metric) of the last epoch, on fold == `fold` of `table` (a small split, as in HPA3).
    """
    from medals.config import recipe_from_dict
    from medals.train.loop import train_fold, training_hash

    base = DIHEDRAL if base_augment is None else base_augment
    work_dir = Path(work_dir)

    def score(policy: Policy) -> float:
        tree = recipe.model_dump(mode="json")
        tree["train"].update(augment=[*base, *policy_to_spec(policy)], epochs=int(epochs), swa=None)
        drop_swa_checkpoint(tree)
        candidate = recipe_from_dict(tree, "policy search recipe")
        folder = work_dir / f"candidate-{training_hash(candidate, table, fold)}"
        metrics = train_fold(
            candidate, table, fold, folder, device, num_classes=num_classes, positive=positive
        )
        name = metric or candidate.main_metric
        if name not in metrics:
            raise MedalsError(f"policy search metric '{name}' is not computed (have: {', '.join(metrics)})")
        # The search keeps the highest scores: a lower-is-better metric (rmse, a loss) is negated.
        sign = -1.0 if metric_direction(name) == "min" else 1.0
        return sign * float(metrics[name])

    return score

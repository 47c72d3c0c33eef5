"""Command line: one verb per stage, `run` for all of them, `ensemble` across recipes, `demo`.

Under torchrun (`torchrun --nproc_per_node N -m medals train RECIPE ...`) every process runs the same
command: they join one process group, train, evaluate and predict share their work, everything else runs
on rank 0 (see medals.stages.pipeline), and only rank 0 prints to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from medals import __version__
from medals.errors import MedalsError

_STAGE_HELP = {
    "prepare": "read the competition CSVs and images into table.parquet (optional resized cache)",
    "split": "assign a fold to every training image (folds.parquet)",
    "search": "search augmentation policies (HPA3) when the recipe has policy_search",
    "train": "train one model per fold (resumes from the last complete epoch)",
    "evaluate": "out-of-fold predictions with TTA, metrics per fold and pooled",
    "predict": "test predictions with TTA, averaged over folds",
    "submit": "post-process and write the submission, validated against the sample submission",
}


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one `medals: error:` sentence (exit 2), like every other error."""

    def error(self, message: str):  # type: ignore[override]
        raise MedalsError(f"{message} (see `{self.prog} --help`)")


# Verbs whose trailing KEY=VALUE words may also come after an option (`train R --fold 0 train.epochs=1`):
# the attribute argparse's leftovers are added to.
_LEFTOVERS = {"overrides", "recipes"}


def _add_recipe_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", type=Path, help="recipe YAML file")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides, e.g. train.epochs=2"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")


def _add_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        action="store_true",
        help="when another launch holds the run folder (or the fold), wait for it instead of stopping",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="medals",
        description="Take a medical-imaging competition folder to a validated submission.",
    )
    parser.add_argument("--version", action="version", version=f"medals {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    for stage, text in _STAGE_HELP.items():
        sub = verbs.add_parser(stage, help=text, description=text)
        _add_recipe_args(sub)
        sub.add_argument("--force", action="store_true", help=f"redo {stage} even if it is done")
        _add_wait(sub)
        if stage == "train":
            sub.add_argument("--fold", type=int, action="append", help="train only this fold (repeatable)")

    run = verbs.add_parser(
        "run",
        help="prepare, split, search, train, evaluate, predict and submit, skipping stages already done",
        description="Run every stage of a recipe, of each recipe in a folder, or of an ensemble file's "
        "members and then the ensemble; stages done for the same resolved config are skipped.",
    )
    _add_recipe_args(run)
    run.add_argument("--force", action="append", default=[], metavar="STAGE", help="redo this stage")
    _add_wait(run)

    clean = verbs.add_parser(
        "clean",
        help="delete the trained folds a changed config or --force moved aside (stale/), listing them",
        description="Delete a run folder's stale/ folder: the trained folds that a changed training config "
        "or --force train moved aside (they come back if the config is changed back, until cleaned).",
    )
    clean.add_argument("target", type=Path, metavar="RUN_DIR_OR_RECIPE", help="a run folder or its recipe")
    clean.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides, when a recipe is given")
    clean.add_argument("--dry-run", action="store_true", help="only list what would be deleted")

    plan = verbs.add_parser(
        "plan",
        help="list the runs of a recipe, a folder of recipes or an ensemble file",
        description="List each model run (its settings and the command that runs it as its own job).",
    )
    _add_recipe_args(plan)

    ens = verbs.add_parser(
        "ensemble",
        help="combine several recipes' test predictions into one submission",
        description="Combine the test predictions of trained recipes (mean or percentile rank): "
        "give an ensemble file, or recipe files with --method/--weights/--out.",
    )
    ens.add_argument(
        "recipes", nargs="+", metavar="RECIPE", help="ensemble file or recipe files, then KEY=VALUE overrides"
    )
    ens.add_argument("--method", choices=["mean", "rank"], help="default: the ensemble file's, else mean")
    ens.add_argument("--weights", help="comma-separated weights, one per recipe (default: equal)")
    ens.add_argument(
        "--out", type=Path, help="output folder (default: the ensemble file's, else runs/ensemble)"
    )

    init = verbs.add_parser(
        "init",
        help="inspect a competition folder and write a commented starting recipe",
        description="Find the CSVs, the id and target columns, the task, the images and their size in a "
        "competition folder, and write a recipe that runs as written, each choice commented.",
    )
    init.add_argument("folder", type=Path, help="the competition folder (CSVs, sample submission, images)")
    init.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="settle a choice or change a key, e.g. data.label_column=grade or task=ordinal",
    )
    init.add_argument("--out", type=Path, help="recipe file to write (default: FOLDER/recipe.yaml)")
    init.add_argument("--force", action="store_true", help="overwrite the recipe file if it exists")

    report = verbs.add_parser(
        "report",
        help="write report.html for a run folder (also written at the end of `medals run`)",
        description="One self-contained HTML page of a run (or ensemble) folder: recipe, stages, OOF metrics, "
        "training curves, ROC/PR, calibration, confusion or per-class F1, Dice and best/worst cases.",
    )
    report.add_argument(
        "run_dir", type=Path, help="a run folder (runs/<name>) or an ensemble's output folder"
    )

    compare = verbs.add_parser(
        "compare",
        help="compare runs: pooled CV, fold spread, time per stage, the config keys that differ",
        description="One table of runs sorted by pooled CV. Give run folders, or a folder of recipes.",
    )
    compare.add_argument(
        "runs", nargs="+", type=Path, metavar="RUN_DIR", help="run folders or a recipe folder"
    )
    style = compare.add_mutually_exclusive_group()
    style.add_argument(
        "--csv", action="store_const", const="csv", dest="style", help="CSV instead of a table"
    )
    style.add_argument(
        "--markdown", action="store_const", const="markdown", dest="style", help="a Markdown table"
    )

    demo = verbs.add_parser(
        "demo",
        help="generate small competitions and run the whole pipeline on each (CPU)",
        description="Write generated competitions (melanoma-like, 4-channel cells, chest masks) "
        "and run every stage on each, printing OOF metrics and submission paths.",
    )
    demo.add_argument("--task", choices=["melanoma", "cells", "chest"], action="append", help="run only this")
    demo.add_argument("--out", type=Path, default=Path("medals-demo"), help="output folder")
    demo.add_argument("--device", default="auto")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; override words after an option (`--fold 0 train.epochs=1`) count as overrides.

    argparse fills a `nargs="*"` positional before the first option and leaves later words over; those
    that are not options are the verb's overrides (or, for `ensemble`, recipes and overrides) too.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    target = next((name for name in _LEFTOVERS if hasattr(args, name)), None)
    options = [word for word in extra if word.startswith("-")]
    if options or (extra and target is None):
        parser.error(f"unrecognized arguments: {' '.join(options or extra)}")
    if extra:
        setattr(args, target, [*getattr(args, target), *extra])
    return args


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    # The verbs that only read or write files: no process group, no model stack (torch) to import.
    if args.verb == "report":
        from medals.stages.report import write_report

        print(f"report: {write_report(args.run_dir)}")
        return 0
    if args.verb == "compare":
        from medals.stages.compare import compare_table, format_table, run_folders

        print(format_table(compare_table(run_folders(list(args.runs))), args.style or "text"))
        return 0
    if args.verb == "clean":
        from medals.stages.clean import run_clean

        run_clean(args.target, list(args.overrides), dry_run=args.dry_run)
        return 0
    if args.verb == "init":
        from medals.stages.init import run_init

        run_init(args.folder, args.out, list(args.overrides), force=args.force)
        return 0

    from medals.config import load_recipe
    from medals.runtime import distributed
    from medals.stages.common import resolve_device
    from medals.stages.pipeline import run_stages

    if distributed.init_from_env() and not distributed.is_main():
        sys.stdout = open(os.devnull, "w")  # for the life of the process
    if args.verb == "demo":
        from medals.demo.runner import run_demo

        tasks = args.task or ["melanoma", "cells", "chest"]
        distributed.run_on_main(lambda: run_demo(tasks, args.out, resolve_device(args.device)))
        return 0
    if args.verb == "ensemble":
        return distributed.run_on_main(lambda: _ensemble(args))
    overrides = list(args.overrides)
    if args.verb == "train" and args.fold:
        overrides.append(f"train.folds=[{','.join(str(k) for k in args.fold)}]")
    if args.verb in ("run", "plan"):
        return _many(args, overrides)
    recipe = load_recipe(args.recipe, overrides)
    device = resolve_device(args.device)
    run_stages(recipe, [args.verb], device, force=[args.verb] if args.force else [], wait=args.wait)
    return 0


def _many(args: argparse.Namespace, overrides: list[str]) -> int:
    """`run` and `plan` over a recipe, a folder of recipes or an ensemble file."""
    from medals.config import load_recipes, make_plan
    from medals.stages.common import resolve_device, say
    from medals.stages.pipeline import STAGES, run_stages
    from medals.stages.plan import describe, format_table

    plan = make_plan(args.recipe)
    every = load_recipes(plan, overrides, plan.all_recipes)
    if args.verb == "plan":
        say(format_table([describe(r, p) for r, p in zip(every, plan.all_recipes, strict=True)]))
        if plan.ensemble:
            gate = f", gated by a stack of {len(plan.gate_recipes)}" if plan.gate_recipes else ""
            say(
                f"then: {plan.ensemble.method} ensemble of the {len(plan.recipes)} runs{gate} "
                f"-> {plan.ensemble_dir}"
            )
        return 0
    device = resolve_device(args.device)
    if len(every) > 1:  # every member checked before the first one starts work
        from medals.runtime.distributed import run_on_main
        from medals.stages.layout import RunLayout
        from medals.stages.pipeline import check_stages

        for recipe in every:
            run_on_main(lambda r=recipe: check_stages(r, RunLayout(r.run_path), STAGES, args.force))
    for recipe in every:
        if len(every) > 1:
            say(f"\n== {recipe.name} ==")
        layout = run_stages(recipe, STAGES, device, force=args.force, wait=args.wait)
        _report(layout.root)
    if plan.ensemble:
        from medals.runtime.distributed import run_on_main

        ensemble = plan.ensemble
        run_on_main(
            lambda: _run_plan_ensemble(plan, overrides, ensemble.method, ensemble.weights, plan.ensemble_dir)
        )
        _report(plan.ensemble_dir)
    return 0


def _report(folder: Path) -> None:
    from medals.runtime.distributed import run_on_main
    from medals.stages.common import say
    from medals.stages.report import write_report

    say(f"report: {run_on_main(lambda: write_report(folder))}")


def _run_plan_ensemble(plan, overrides: list[str], method: str, weights, out: Path) -> None:
    from medals.config import load_recipes
    from medals.stages.ensemble import run_ensemble

    members = load_recipes(plan, overrides)
    gate = None
    if plan.ensemble is not None and plan.ensemble.gate is not None:
        gate = (load_recipes(plan, overrides, plan.gate_recipes), plan.ensemble.gate)
    run_ensemble(members, method, weights, out, gate=gate)


def _ensemble(args: argparse.Namespace) -> int:
    from medals.config import Plan, load_ensemble

    files = [Path(text) for text in args.recipes if "=" not in text]
    overrides = [text for text in args.recipes if "=" in text]
    if len(files) == 1 and files[0].is_file() and _is_ensemble(files[0]):
        plan = load_ensemble(files[0])
    else:
        plan = Plan(files)
    method = args.method or (plan.ensemble.method if plan.ensemble else "mean")
    weights = (
        _parse_weights(args.weights) if args.weights else (plan.ensemble.weights if plan.ensemble else None)
    )
    out = args.out or plan.ensemble_dir or Path("runs/ensemble")
    _run_plan_ensemble(plan, overrides, method, weights, out)
    return 0


def _is_ensemble(path: Path) -> bool:
    from medals.config import is_ensemble_file

    return is_ensemble_file(path)


def _parse_weights(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise MedalsError(f"--weights '{text}' is not a comma-separated list of numbers") from None


def _one_sentence(exc: MedalsError) -> str:
    """The error's own sentence, also when a DataLoader worker wrapped it in its traceback."""
    text = str(exc)
    if "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        return last.split("MedalsError: ", 1)[-1]
    return text


def main(argv: list[str] | None = None) -> int:
    from medals.runtime.distributed import shutdown

    try:
        code = _main(argv)
        shutdown()
        return code
    except MedalsError as exc:
        print(f"medals: error: {_one_sentence(exc)}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:
        # A write outside medals.files (a library's own file) refused by the machine: the same sentence.
        from medals.files import os_fault

        fault = os_fault(exc, action="use")
        if fault is None:
            raise
        print(f"medals: error: {fault}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medals: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

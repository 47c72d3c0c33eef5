"""The pipeline's bookkeeping around the stages: one digest per stage, two round trips to rank 0 per stage
that runs (open it: lock, config, stamp; mark it done), one per stage it skips, and stamps that say what
finished, what it wrote and what it read."""

from __future__ import annotations

import pytest

import medals.stages.pipeline as pipeline
from medals.config import recipe_from_dict
from medals.files import read_json


@pytest.fixture
def counted(monkeypatch):
    calls = {"run_on_main": 0, "stage_digest": 0, "ran": []}
    run_on_main, stage_digest = pipeline.run_on_main, pipeline.stage_digest

    def counting_run_on_main(fn):
        calls["run_on_main"] += 1
        return run_on_main(fn)

    def counting_digest(recipe, stage):
        calls["stage_digest"] += 1
        return stage_digest(recipe, stage)

    monkeypatch.setattr(pipeline, "run_on_main", counting_run_on_main)
    monkeypatch.setattr(pipeline, "stage_digest", counting_digest)
    # The stages themselves are tested elsewhere; here they only record that they ran.
    monkeypatch.setattr(
        pipeline, "_run_stage", lambda recipe, layout, stage, device: calls["ran"].append(stage)
    )
    return calls


def _recipe(tmp_path):
    return recipe_from_dict({"name": "t", "task": "multiclass", "run_dir": str(tmp_path / "run")}, "t")


def test_each_stage_costs_one_digest_and_two_round_trips(tmp_path, counted):
    stages = ("prepare", "split", "evaluate", "submit")
    layout = pipeline.run_stages(_recipe(tmp_path), stages, "cpu")
    assert counted["ran"] == list(stages)
    assert counted["stage_digest"] == len(stages)
    # the checks before any work, then open (lock, config, stamp) and mark each stage
    assert counted["run_on_main"] == 1 + 2 * len(stages)
    for stage in stages:
        stamp = read_json(layout.stamps / f"{stage}.json")
        assert stamp["seconds"] >= 0  # how long the stage took, for `medals compare`
        assert stamp == {
            "digest": pipeline.stage_digest(_recipe(tmp_path), stage),
            "done": True,
            "seconds": stamp["seconds"],
            "outputs": {},  # the stages did not run here: they wrote nothing
            # the signature of each earlier stage it reads that ran (submit's evaluate did; predict not)
            "inputs": {
                earlier: pipeline.signature(read_json(layout.stamps / f"{earlier}.json"))
                if earlier in stages
                else None
                for earlier in pipeline.READS[stage]
            },
        }


def test_a_finished_stage_is_skipped_after_one_round_trip(tmp_path, counted):
    pipeline.run_stages(_recipe(tmp_path), ("prepare", "split"), "cpu")
    counted.update(run_on_main=0, stage_digest=0, ran=[])
    pipeline.run_stages(_recipe(tmp_path), ("prepare", "split"), "cpu")
    assert counted["ran"] == []
    assert counted == {"run_on_main": 1 + 2, "stage_digest": 2, "ran": []}  # the checks, then one a stage
    # Forced, it runs again and is marked again.
    pipeline.run_stages(_recipe(tmp_path), ("prepare", "split"), "cpu", force=["split"])
    assert counted["ran"] == ["split"]


def test_a_changed_section_makes_the_stage_run_again(tmp_path, counted):
    pipeline.run_stages(_recipe(tmp_path), ("split",), "cpu")
    changed = _recipe(tmp_path).model_copy(update={"seed": 7})
    counted["ran"].clear()
    pipeline.run_stages(changed, ("split",), "cpu")
    assert counted["ran"] == ["split"]

"""train.phases: stretches of epochs with a frozen backbone, their own optimizer and lr.

HPA1's write-up trains in two phases: the backbone frozen and only the head trained, then everything
fine-tuned. Each phase starts a fresh optimizer (train.optimizer) over the parameters it leaves
trainable, as a new training stage does; its lr is the phase's constant ``lr`` or train.schedule at the
global epoch. The phase of an epoch follows from the epoch alone, so a resumed run rebuilds the
optimizer of the phase its last.pt was saved in (the saved moments fit it) and changes phase at the
same epoch an uninterrupted run does.

Frozen parameters get ``requires_grad = False`` (no gradient, not in the optimizer); the frozen
modules stay in training mode, so their BatchNorm running statistics still follow the data.
"""

from __future__ import annotations

from torch import nn

from medals.config import PhaseConfig, TrainConfig
from medals.errors import MedalsError
from medals.runtime.checkpoint import unwrap
from medals.train.optim import build_optimizer
from medals.train.schedules import LrSchedule
from medals.train.setup import Run


def phase_spans(train: TrainConfig) -> list[tuple[int, int, PhaseConfig]]:
    """(first epoch, end epoch exclusive, phase), 0-based, covering 0..train.epochs."""
    spans, start = [], 0
    for phase in train.phases or []:
        end = start + phase.epochs if phase.epochs is not None else train.epochs
        spans.append((start, end, phase))
        start = end
    return spans


def phase_index(train: TrainConfig, epoch: int) -> int | None:
    """The phase that epoch ``epoch`` (0-based) belongs to; None without train.phases."""
    spans = phase_spans(train)
    if not spans:
        return None
    for i, (start, end, _) in enumerate(spans):
        if start <= epoch < end:
            return i
    return len(spans) - 1  # past the plan (a resumed run with more epochs): the last phase holds


def backbone_module(model: nn.Module) -> nn.Module:
    """The feature extractor: a classifier's timm ``backbone``, a segmenter's ``encoder``."""
    model = unwrap(model)
    if isinstance(getattr(model, "backbone", None), nn.Module):
        return model.backbone
    net = getattr(model, "net", None)
    if isinstance(getattr(net, "encoder", None), nn.Module):
        return net.encoder
    raise MedalsError(
        f"train.phases freeze 'backbone', but the model ({type(model).__name__}) has no backbone or encoder"
    )


def set_frozen(model: nn.Module, freeze: str | None) -> None:
    """Every parameter trainable, then the ``freeze`` modules' parameters not."""
    for param in unwrap(model).parameters():
        param.requires_grad_(True)
    if freeze == "backbone":
        for param in backbone_module(model).parameters():
            param.requires_grad_(False)


def enter_phase(run: Run, index: int) -> None:
    """Freeze what phase ``index`` freezes and give it a fresh optimizer over the rest."""
    phase = phase_spans(run.recipe.train)[index][2]
    set_frozen(run.model, phase.freeze)
    run.optimizer = build_optimizer(run.model, run.recipe.train)
    run.phase = index


def start_phases(run: Run) -> None:
    """Right after build_run: the first phase's freezing, optimizer and the phases' lr (no-op without)."""
    if not run.recipe.train.phases:
        return
    run.schedule = phased_schedule(run.schedule, run.recipe.train)
    enter_phase(run, 0)


def enter_epoch(run: Run, epoch: int) -> None:
    """Before epoch ``epoch`` (0-based): switch to its phase when it starts a new one."""
    index = phase_index(run.recipe.train, epoch)
    if index is not None and index != run.phase:
        enter_phase(run, index)


def before_restore(run: Run, epochs_done: int) -> None:
    """Before a resume loads last.pt (saved after ``epochs_done`` epochs): the optimizer of the phase
    that file was saved in, so its moments fit the parameter groups."""
    if epochs_done > 0:
        enter_epoch(run, epochs_done - 1)


def phased_schedule(schedule: LrSchedule, train: TrainConfig) -> LrSchedule:
    """``schedule`` with each phase's constant lr (where it sets one) over that phase's epochs."""
    if not train.phases:
        return schedule
    spans = phase_spans(train)
    base = schedule.rule

    def rule(epoch: int, step: int) -> float:
        index = phase_index(train, epoch)
        lr = spans[index][2].lr if index is not None else None
        return base(epoch, step) if lr is None else lr

    return LrSchedule(rule, schedule.epochs, schedule.steps_per_epoch)

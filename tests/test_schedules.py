from __future__ import annotations

import math

import pytest

from medals.config import ScheduleConfig, TrainConfig
from medals.errors import MedalsError
from medals.train.schedules import build_schedule, compile_formula, epoch_table

MELANOMA = "lr if epoch == 1 else (10 * lr if epoch == 2 else 10 * lr * (1 + cos(pi * (epoch - 2) / (epochs - 1))) / 2)"


def _train(**schedule) -> TrainConfig:
    epochs = schedule.pop("epochs", 10)
    lr = schedule.pop("lr", 1e-3)
    return TrainConfig(epochs=epochs, lr=lr, schedule=ScheduleConfig(**schedule))


def test_constant_is_flat():
    schedule = build_schedule(_train(name="constant", lr=0.01, epochs=3), steps_per_epoch=5)
    assert {schedule.lr_at(e, s) for e in range(3) for s in range(5)} == {0.01}


def test_warmup_cosine_endpoints_and_shape():
    train = _train(name="warmup_cosine", lr=1e-3, min_lr=1e-5, warmup_epochs=1.5, epochs=10)
    schedule = build_schedule(train, steps_per_epoch=4)
    lrs = [schedule.lr_at(e, s) for e in range(10) for s in range(4)]
    warmup = 6  # 1.5 epochs x 4 steps
    # Warmup starts near zero and rises linearly up to the peak.
    assert lrs[0] == pytest.approx(1e-3 / (warmup + 1))
    assert all(b > a for a, b in zip(lrs[: warmup + 1], lrs[1 : warmup + 1], strict=False))
    assert lrs[warmup] == pytest.approx(1e-3)
    assert max(lrs) == pytest.approx(1e-3)
    # Cosine decays monotonically to exactly min_lr at the last step.
    decay = lrs[warmup:]
    assert all(b < a for a, b in zip(decay, decay[1:], strict=False))
    assert lrs[-1] == pytest.approx(1e-5)
    # Half way through the decay it is the midpoint of lr and min_lr.
    span = len(lrs) - 1 - warmup
    t = warmup + span // 2
    expected = 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * (span // 2) / span))
    assert lrs[t] == pytest.approx(expected)


def test_warmup_cosine_without_warmup_starts_at_lr():
    schedule = build_schedule(_train(name="warmup_cosine", lr=0.1, epochs=2), steps_per_epoch=3)
    assert schedule.lr_at(0, 0) == pytest.approx(0.1)
    assert schedule.lr_at(1, 2) == pytest.approx(0.0)


def test_steps_table_per_epoch():
    train = _train(name="steps", lr=1e-3, epochs=7, steps=[(5, 1e-5), (3, 1e-4)])
    assert epoch_table(train) == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5, 1e-5])
    schedule = build_schedule(train, steps_per_epoch=10)
    assert schedule.lr_at(2, 0) == schedule.lr_at(2, 9) == pytest.approx(1e-4)


def test_steps_table_rejects_bad_entries():
    with pytest.raises(MedalsError, match="train.schedule.steps"):
        epoch_table(_train(name="steps", epochs=3, steps=[]))
    with pytest.raises(MedalsError, match="train.schedule.steps"):
        epoch_table(_train(name="steps", epochs=3, steps=[(0, 1e-3)]))


@pytest.mark.parametrize("epochs", [15, 18])
def test_formula_reproduces_the_melanoma_table(epochs):
    init_lr = 3e-5
    train = _train(name="formula", formula=MELANOMA, lr=init_lr, epochs=epochs)
    expected = [init_lr, 10 * init_lr]
    for k in range(3, epochs + 1):
        expected.append(10 * init_lr * (1 + math.cos(math.pi * (k - 2) / (epochs - 1))) / 2)
    table = epoch_table(train)
    assert table == pytest.approx(expected, rel=1e-12)
    # Hand-checked values: epoch 3 is just under the peak, the last epoch is small but not zero.
    assert table[1] == pytest.approx(3e-4)
    assert table[-1] == pytest.approx(3e-4 * (1 + math.cos(math.pi * (epochs - 2) / (epochs - 1))) / 2)
    assert 0 < table[-1] < table[2] < table[1]
    # Per-epoch: every step of an epoch has that epoch's lr.
    schedule = build_schedule(train, steps_per_epoch=7)
    assert schedule.lr_at(4, 0) == schedule.lr_at(4, 6) == pytest.approx(expected[4])


def test_formula_math_names_and_comparisons():
    f = compile_formula("max(lr * exp(-epoch / epochs), sqrt(1e-10)) if epoch >= 2 and not epoch > 5 else lr")
    assert f({"epoch": 1.0, "epochs": 10.0, "lr": 0.1}) == pytest.approx(0.1)
    assert f({"epoch": 3.0, "epochs": 10.0, "lr": 0.1}) == pytest.approx(0.1 * math.exp(-0.3))
    assert f({"epoch": 6.0, "epochs": 10.0, "lr": 0.1}) == pytest.approx(0.1)
    assert compile_formula("lr * (1 < epoch < 3)")({"epoch": 2.0, "epochs": 4.0, "lr": 2.0}) == 2.0


@pytest.mark.parametrize(
    "formula, problem",
    [
        ("__import__('os').system('echo hacked')", "__import__"),
        ("lr.__class__", "Attribute"),
        ("open('x')", "open"),
        ("[lr for lr in (1,)]", "ListComp"),
        ("lambda: lr", "Lambda"),
        ("'a' * 3", "constant"),
        ("cos", "without calling"),
        ("cos(x=1)", "plain arguments"),
        ("lr +", "not a valid expression"),
        ("foo * lr", "foo"),
    ],
)
def test_formula_rejects_unsafe_or_unknown(formula, problem):
    with pytest.raises(MedalsError, match="train.schedule.formula") as err:
        epoch_table(_train(name="formula", formula=formula, epochs=3))
    assert problem in str(err.value)


@pytest.mark.parametrize(
    "formula, problem",
    [
        ("lr / (epoch - 2) ** 2", "at epoch 2 (float division by zero)"),
        ("10.0 ** 10 ** 10", "cannot be computed"),  # float overflow, not a huge integer
        ("log(epoch - 3)", "cannot be computed"),  # math domain error
        ("lr - 1", "must be >= 0"),
    ],
)
def test_formula_errors_at_build_time(formula, problem):
    with pytest.raises(MedalsError, match="train.schedule.formula") as err:
        build_schedule(_train(name="formula", formula=formula, epochs=4), steps_per_epoch=3)
    assert problem in str(err.value)


def test_formula_missing():
    with pytest.raises(MedalsError, match="train.schedule.formula is empty"):
        epoch_table(_train(name="formula", epochs=3))

"""Learning-rate schedules: the lr of every optimizer step, from train.lr and train.schedule.

Per-epoch schedules (constant, steps, formula) give one lr for the whole epoch; warmup_cosine changes it
every optimizer step. Epochs are 0-based in ``lr_at`` and 1-based in the recipe (steps, formula), as the
seeds' write-ups count them.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass

from medals.config import TrainConfig
from medals.errors import MedalsError

FORMULA_KEY = "train.schedule.formula"


@dataclass(frozen=True)
class LrSchedule:
    """lr_at(epoch, step): the lr for optimizer step ``step`` (0-based) of epoch ``epoch`` (0-based)."""

    rule: Callable[[int, int], float]
    epochs: int
    steps_per_epoch: int

    def lr_at(self, epoch: int, step: int) -> float:
        return float(self.rule(epoch, step))


def build_schedule(train: TrainConfig, steps_per_epoch: int) -> LrSchedule:
    steps_per_epoch = max(1, int(steps_per_epoch))
    sched = train.schedule
    if sched.name == "constant":
        rule = _constant(train.lr)
    elif sched.name == "warmup_cosine":
        rule = _warmup_cosine(train, steps_per_epoch)
    elif sched.name == "steps":
        rule = _per_epoch(_step_table(train))
    else:
        rule = _per_epoch(_formula_table(train))
    return LrSchedule(rule, train.epochs, steps_per_epoch)


def epoch_table(train: TrainConfig) -> list[float]:
    """The lr of each epoch (index 0 = epoch 1); warmup_cosine is taken with one step per epoch."""
    schedule = build_schedule(train, steps_per_epoch=1)
    return [schedule.lr_at(epoch, 0) for epoch in range(train.epochs)]


# ---- the schedules ---------------------------------------------------------------------------


def _constant(lr: float) -> Callable[[int, int], float]:
    return lambda epoch, step: lr


def _per_epoch(table: list[float]) -> Callable[[int, int], float]:
    # Past the table (a resumed run with more epochs than planned) the last value holds.
    return lambda epoch, step: table[min(epoch, len(table) - 1)]


def _warmup_cosine(train: TrainConfig, steps_per_epoch: int) -> Callable[[int, int], float]:
    """Linear warmup from lr/warmup_steps up to lr, then cosine down to min_lr at the very last step."""
    lr, min_lr = train.lr, train.schedule.min_lr
    total = train.epochs * steps_per_epoch
    warmup = min(round(train.schedule.warmup_epochs * steps_per_epoch), total - 1)
    decay_span = max(1, total - warmup - 1)

    def rule(epoch: int, step: int) -> float:
        t = epoch * steps_per_epoch + step
        if t < warmup:
            return lr * (t + 1) / (warmup + 1)
        progress = min(1.0, (t - warmup) / decay_span)
        return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return rule


def _step_table(train: TrainConfig) -> list[float]:
    entries = sorted(train.schedule.steps)
    if not entries:
        raise MedalsError("train.schedule.steps is empty: schedule 'steps' needs [first_epoch, lr] pairs")
    for first, lr in entries:
        if first < 1 or lr < 0:
            raise MedalsError(
                f"train.schedule.steps has [{first}, {lr}]: epochs start at 1 and lr must be >= 0"
            )
    table = []
    for epoch in range(1, train.epochs + 1):
        value = train.lr
        for first, lr in entries:
            if first <= epoch:
                value = lr
        table.append(float(value))
    return table


def _formula_table(train: TrainConfig) -> list[float]:
    text = train.schedule.formula
    if not text or not text.strip():
        raise MedalsError(f"{FORMULA_KEY} is empty: schedule 'formula' needs an expression of epoch")
    expression = compile_formula(text)
    table = []
    for epoch in range(1, train.epochs + 1):
        value = expression({"epoch": float(epoch), "epochs": float(train.epochs), "lr": train.lr})
        if not math.isfinite(value) or value < 0:
            raise MedalsError(f"{FORMULA_KEY} '{text}' gives lr {value} at epoch {epoch}: it must be >= 0")
        table.append(value)
    return table


# ---- a safe evaluator for the formula -----------------------------------------------------------
# The formula comes from a recipe file, so it is parsed with ast and walked here: no eval(), no
# attribute access, no names beyond the listed ones. Numbers are floats, so 10**10**10 overflows
# (an error) instead of computing a huge integer.

_FUNCTIONS: dict[str, Callable[..., float]] = {
    "cos": math.cos,
    "sin": math.sin,
    "exp": math.exp,
    "log": math.log,
    "sqrt": math.sqrt,
    "min": min,
    "max": max,
}
_CONSTANTS = {"pi": math.pi}
_VARIABLES = ("epoch", "epochs", "lr")
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Not: operator.not_}
_COMPARE = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


def compile_formula(text: str) -> Callable[[dict[str, float]], float]:
    """Parse and check ``text``; return a function of the variables (epoch, epochs, lr)."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise MedalsError(f"{FORMULA_KEY} '{text}' is not a valid expression ({exc.msg})") from None
    callees = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    for node in ast.walk(tree):
        _check_node(node, text)
        if isinstance(node, ast.Name) and node.id in _FUNCTIONS and id(node) not in callees:
            raise MedalsError(f"{FORMULA_KEY} '{text}' uses the function '{node.id}' without calling it")

    def evaluate(variables: dict[str, float]) -> float:
        try:
            return float(_eval(tree.body, variables))
        except (ZeroDivisionError, OverflowError, ValueError, TypeError) as exc:
            raise MedalsError(
                f"{FORMULA_KEY} '{text}' cannot be computed at epoch {variables['epoch']:g} ({exc})"
            ) from None

    return evaluate


def _check_node(node: ast.AST, text: str) -> None:
    allowed = (
        ast.Expression,
        ast.BinOp,
        ast.UnaryOp,
        ast.BoolOp,
        ast.Compare,
        ast.IfExp,
        ast.Call,
        ast.Name,
        ast.Constant,
        ast.Load,
        ast.And,
        ast.Or,
        *_BINARY,
        *_UNARY,
        *_COMPARE,
    )
    if not isinstance(node, allowed):
        raise MedalsError(f"{FORMULA_KEY} '{text}' uses {type(node).__name__}, which is not allowed")
    known = ", ".join([*_VARIABLES, *_CONSTANTS, *_FUNCTIONS])
    if isinstance(node, ast.Name) and node.id not in (*_VARIABLES, *_CONSTANTS, *_FUNCTIONS):
        raise MedalsError(f"{FORMULA_KEY} '{text}' uses the name '{node.id}'; allowed names: {known}")
    if isinstance(node, ast.Constant) and (
        isinstance(node.value, bool) or not isinstance(node.value, (int, float))
    ):
        raise MedalsError(f"{FORMULA_KEY} '{text}' has the constant {node.value!r}; only numbers are allowed")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            raise MedalsError(f"{FORMULA_KEY} '{text}' calls something other than {', '.join(_FUNCTIONS)}")
        if node.keywords or not node.args or any(isinstance(arg, ast.Starred) for arg in node.args):
            raise MedalsError(f"{FORMULA_KEY} '{text}': call {node.func.id}() with plain arguments")


def _eval(node: ast.AST, variables: dict[str, float]) -> float:
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        if node.id in variables:
            return float(variables[node.id])
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise TypeError(f"'{node.id}' is a function; call it")
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, variables), _eval(node.right, variables))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, variables))
    if isinstance(node, ast.BoolOp):
        values = [_eval(value, variables) for value in node.values]
        result = values[0]
        for value in values[1:]:
            result = (result and value) if isinstance(node.op, ast.And) else (result or value)
        return result
    if isinstance(node, ast.Compare):
        left = _eval(node.left, variables)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _eval(right_node, variables)
            if not _COMPARE[type(op)](left, right):
                return 0.0
            left = right
        return 1.0
    if isinstance(node, ast.IfExp):
        branch = node.body if _eval(node.test, variables) else node.orelse
        return _eval(branch, variables)
    if isinstance(node, ast.Call):
        args = [_eval(arg, variables) for arg in node.args]
        return float(_FUNCTIONS[node.func.id](*args))
    raise TypeError(f"unsupported expression {type(node).__name__}")

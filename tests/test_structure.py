"""The package's shape, as README.md's "Code map" draws it: layers that import only downwards, no import
circle (function-level imports count), no module over 400 lines, and a map that names every part of the tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "medals"
MAX_LINES = 400


def code_map() -> dict[str, int]:
    """Top-level entry of medals/ ("config", "errors", "cli", ...) -> its layer, from the README table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Code map", 1)[1].split("\n## ", 1)[0]
    layers: dict[str, int] = {}
    for row in re.findall(r"^\| (\d+) \| ([^|]+) \|", section, flags=re.M):
        for path in re.findall(r"`medals/([\w.]+?)(?:\.py|/)`", row[1]):
            assert path not in layers, f"{path} is in the code map twice"
            layers[path] = int(row[0])
    return layers


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The medals modules `name` imports anywhere in its file (an imported name that is a module counts)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_package else name.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def layer_of(module: str, layers: dict[str, int]) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    return layers[top]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_code_map_names_every_part_of_the_tree():
    layers = code_map()
    tree = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if p.suffix == ".py" or (p / "__init__.py").exists()
    }
    assert set(layers) == tree, (
        f"in the tree, not the map: {tree - set(layers)}; in the map only: {set(layers) - tree}"
    )


def test_no_import_from_a_lower_layer():
    layers = code_map()
    upward = [
        f"{module} (layer {layer_of(module, layers)}) imports {target} (layer {layer_of(target, layers)})"
        for module, targets in graph().items()
        for target in sorted(targets)
        if layer_of(target, layers) > layer_of(module, layers)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_circle():
    assert cycles(graph()) == []


def test_no_module_over_the_line_limit():
    long = {
        name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_checks_catch_what_they_look_for():
    # A circle and an upward import, on made-up edges, so the checks above cannot pass vacuously.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    layers = code_map()
    assert (
        layer_of("medals.cli", layers)
        > layer_of("medals.stages.train", layers)
        > layer_of("medals.config.train", layers)
    )
    assert layer_of("medals", layers) == 0
    # The real graph holds the edges each import form makes: `from pkg import module` (runtime.distributed),
    # a function-level import (data.splits inside train.loop) and `import a.b as c` (kernels in color).
    edges = graph()
    assert {"medals.runtime.distributed", "medals.data.splits", "medals.augment.cpu"} <= edges[
        "medals.train.loop"
    ]
    assert "medals.augment.gpu.kernels" in edges["medals.augment.gpu.color"]


@pytest.mark.parametrize("module", ["medals.augment.policy", "medals.infer.predict", "medals.data.dataset"])
def test_the_former_circle_stays_open(module):
    # augment.policy imported train.loop (the policy search trains models), which imported them all back.
    edges = graph()
    reach, todo = set(), [module]
    while todo:
        for target in edges[todo.pop()]:
            if target not in reach:
                reach.add(target)
                todo.append(target)
    assert not any(m.startswith(("medals.train", "medals.stages")) for m in reach), sorted(reach)

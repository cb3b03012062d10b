"""The package's layers point down only, and no module imports itself back (docs/architecture.md).

Every ``import evc...`` counts, at module level or inside a function: an import deferred into a
function still makes a loop, only a hidden one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Highest first. A module may import its own layer and the layers below it.
LAYERS: dict[str, int] = {
    "evc.__main__": 6,
    "evc.cli": 6,
    "evc.eval": 5,
    "evc.distill": 5,
    "evc.train": 4,
    "evc.onnx": 4,  # export (torch) and the ONNX Runtime codec (no torch: tests/test_onnx.py)
    "evc": 3,  # the package itself: evc.load, evc.Codec, ...
    "evc.codec": 3,
    "evc.coding": 3,
    "evc.fileinfo": 3,
    "evc.icc": 3,
    "evc.ratecontrol": 3,
    "evc.image": 3,
    "evc.alpha": 3,
    "evc.arguments": 3,
    "evc.threads": 3,
    "evc.models": 2,
    "evc.entropy": 1,
    "evc.nn": 1,
    "evc.bitstream": 0,
    "evc.errors": 0,
    "evc.fileutil": 0,
    "evc.extras": 0,
    "evc.shared_data": 0,
    "evc.weights_keys": 0,
}
# Within one layer: pairs that must not import each other (first -> second is forbidden).
FORBIDDEN = [
    ("evc.nn", "evc.entropy"),  # the entropy model uses network pieces, never the other way round
    ("evc.onnx", "evc.train"),
    ("evc.train", "evc.onnx"),
    ("evc.eval", "evc.distill"),
    ("evc.distill", "evc.eval"),
]
# Third-party imports that a layer must not make: the file format knows no torch.
NO_TORCH = ("evc.bitstream", "evc.errors", "evc.fileutil", "evc.shared_data", "evc.weights_keys")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, package: str) -> set[str]:
    """Every module name imported anywhere in the file (``package``: the one it lies in, for relative
    imports), as absolute names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            # `from evc.x import y` may import the submodule evc.x.y
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _modules() -> dict[str, set[str]]:
    graph = {}
    for path in sorted((SRC / "evc").rglob("*.py")):
        name = _module_name(path)
        graph[name] = _imports(path, name if path.name == "__init__.py" else name.rpartition(".")[0])
    return graph


GRAPH = _modules()


def _resolve(name: str) -> str | None:
    """The evc module ``name`` refers to (a name imported from a module resolves to that module)."""
    while name:
        if name in GRAPH:
            return name
        name = name.rpartition(".")[0]
    return None


def _group(module: str) -> str:
    """The longest key of LAYERS that ``module`` belongs to."""
    candidates = [key for key in LAYERS if module == key or module.startswith(key + ".")]
    if not candidates:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")
    return max(candidates, key=len)


def _edges() -> list[tuple[str, str]]:
    edges = []
    for module, imported in GRAPH.items():
        for name in imported:
            target = _resolve(name) if name.startswith("evc") else None
            if target is not None and target != module:
                edges.append((module, target))
    return sorted(set(edges))


def test_every_module_has_a_layer() -> None:
    for module in GRAPH:
        _group(module)


def _violations(edges: list[tuple[str, str]]) -> list[str]:
    wrong = []
    for source, target in edges:
        if target == "evc" and source.startswith("evc."):
            # `import evc.x` names the package; only a real use of evc's own API counts, which the
            # package's __init__ re-exports from layer 3. Allowed from layer 3 and up.
            if LAYERS[_group(source)] < 3:
                wrong.append(f"{source} -> evc")
            continue
        src_group, dst_group = _group(source), _group(target)
        if LAYERS[dst_group] > LAYERS[src_group]:
            wrong.append(f"{source} (layer {LAYERS[src_group]}) -> {target} (layer {LAYERS[dst_group]})")
        for low, high in FORBIDDEN:
            if (source == low or source.startswith(low + ".")) and (target == high or target.startswith(high + ".")):
                wrong.append(f"{source} -> {target} (forbidden: {low} must not import {high})")
    return wrong


def test_imports_point_down_only() -> None:
    wrong = _violations(_edges())
    assert not wrong, "imports against the layer rules:\n" + "\n".join(wrong)


def test_the_rules_catch_what_issue_15_found() -> None:
    found = [
        ("evc.codec", "evc.eval.metrics"),
        ("evc.nn.exact", "evc.models.evc"),
        ("evc.nn.exact", "evc.entropy.dual_prior"),
        ("evc.train.cli", "evc.cli.main"),
        ("evc.train.validation", "evc.eval.published"),
        ("evc.train.cli", "evc.distill.distill"),
    ]
    assert len(_violations(found)) == len(found)
    assert not _violations([("evc.eval.bench", "evc.codec"), ("evc.entropy.latent_codec", "evc.nn.tiling")])


def _plain_edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module: set() for module in GRAPH}
    for source, target in _edges():
        # A package's __init__ re-exporting its own submodules is not a loop of the code.
        if source.startswith(target + "."):
            continue
        graph[source].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_there_are_no_import_cycles() -> None:
    cycles = _cycles(_plain_edges())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_finds_a_loop() -> None:
    loop = {"evc.train.cli": {"evc.distill.distill"}, "evc.distill.distill": {"evc.train.cli"}}
    assert _cycles(loop) == [["evc.distill.distill", "evc.train.cli", "evc.distill.distill"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", NO_TORCH)
def test_the_lowest_layer_knows_no_torch(package: str) -> None:
    for module, imported in GRAPH.items():
        if module == package or module.startswith(package + "."):
            assert not {name for name in imported if name.split(".")[0] in ("torch", "numpy")}, module


def test_the_weights_keys_import_nothing() -> None:
    """The GPU kit loads evc/weights_keys.py by its path, outside the package: an import there of evc
    would run evc/__init__.py (torch), and a relative one would fail."""
    assert GRAPH["evc.weights_keys"] == set()


def test_the_checker_sees_a_late_upward_import(tmp_path: Path) -> None:
    """The checker reads imports inside functions too (the way a loop used to hide)."""
    source = tmp_path / "late.py"
    source.write_text("def f():\n    from evc.models.evc import EVC\n    from . import tiling\n    return EVC\n")
    assert {"evc.models.evc", "evc.nn.tiling"} <= _imports(source, "evc.nn")

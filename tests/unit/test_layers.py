"""The folders are the architecture: every import in `gateway/` points down a layer, and none forms a cycle.

The graph counts every import statement, those under `if TYPE_CHECKING:` and inside functions
included: a cycle hidden from the interpreter is still a cycle for a reader.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"

# What each top-level package of gateway/ may import (besides itself). Layers, lowest first:
# core; store and upstream (siblings: neither imports the other); policies; observability; http; cli.
MAY_IMPORT: dict[str, set[str]] = {
    "core": set(),
    "store": {"core"},
    "upstream": {"core"},
    "policies": {"core", "store", "upstream"},
    "observability": {"core", "store", "upstream", "policies"},
    "http": {"core", "store", "upstream", "policies", "observability"},
    "cli": {"core", "store", "upstream", "policies", "observability", "http", "simulator"},
    "simulator": set(),  # apart from the gateway: only core.clock, checked below
}
SIMULATOR_MAY_USE = {"gateway.core.clock"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(GATEWAY.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in GATEWAY.rglob("*.py")}
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                if target in modules and target != name:
                    edges[name].add(target)
    return edges


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_import_points_down_a_layer() -> None:
    upward = []
    for source, targets in _graph().items():
        layer = _layer(source)
        if layer not in MAY_IMPORT:  # gateway/__init__.py and __main__.py: the top
            continue
        for target in targets:
            other = _layer(target)
            if other == layer:
                continue
            if layer == "simulator" and target in SIMULATOR_MAY_USE:
                continue
            if other not in MAY_IMPORT[layer]:
                upward.append(f"{source} -> {target}")
    assert not upward, "imports against the layering:\n" + "\n".join(sorted(upward))


def test_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_graph_sees_imports() -> None:
    # A walker that found nothing would pass both checks above.
    graph = _graph()
    assert "gateway.core.call" in graph["gateway.core.pipeline"]
    assert "gateway.core.clock" in graph["gateway.simulator.app"]

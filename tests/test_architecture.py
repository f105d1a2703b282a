"""The project's layers, checked on its imports (issue 17): no import cycles, and pygls and
lsprotocol only in the protocol layer (`lsp_server/`'s own modules, not `lsp_server/assistant/`,
`context/` or `quant/`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Source folder -> the package it installs as (pyproject.toml's package-dir).
PACKAGES = {"lsp_server": "codeflow.lsp_server", "context": "codeflow.context", "quant": "codeflow.quant"}
PROTOCOL_ONLY = ("pygls", "lsprotocol")
# Modules that serve the protocol layer, not the assistant: these may import pygls.
NOT_PROTOCOL = ("codeflow.lsp_server.assistant", "codeflow.context", "codeflow.quant")


def project_modules() -> dict[str, Path]:
    """Every project module by dotted name."""
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imports_of(name: str, path: Path) -> set[str]:
    """The absolute module names a module imports anywhere in it (functions included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports."""
    modules = project_modules()
    return {name: {m for m in imports_of(name, path) if m in modules and m != name}
            for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_walk_sees_the_known_layers() -> None:
    edges = graph()
    assert "codeflow.lsp_server.assistant.facade" in edges
    assert "codeflow.lsp_server.assistant.facade" in edges["codeflow.lsp_server.server"]
    assert "codeflow.lsp_server.server" in edges["codeflow.lsp_server.actions"]


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_the_project_modules() -> None:
    assert cycles(graph()) == []


@pytest.mark.parametrize("layer", NOT_PROTOCOL)
def test_only_the_protocol_layer_imports_pygls(layer: str) -> None:
    offenders = {}
    for name, path in project_modules().items():
        if name == layer or name.startswith(f"{layer}."):
            bad = sorted(m for m in imports_of(name, path) if m.split(".")[0] in PROTOCOL_ONLY)
            if bad:
                offenders[name] = bad
    assert offenders == {}


def test_the_assistant_does_not_import_the_protocol_layer() -> None:
    edges = graph()
    protocol = {m for m in edges if m.startswith("codeflow.lsp_server.") and
                not m.startswith("codeflow.lsp_server.assistant") and m != "codeflow.lsp_server.settings"}
    reaches = {name: sorted(edges[name] & protocol) for name in edges
               if name.startswith("codeflow.lsp_server.assistant")}
    assert {k: v for k, v in reaches.items() if v} == {}

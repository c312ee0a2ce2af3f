"""identity/ is layered one way (issue 13): the service builds its children, the children use
narrow interfaces (host.py) and shared helpers, and nothing reaches into another's privates.
The graph is read from the source text: imports inside functions and under TYPE_CHECKING count."""

from __future__ import annotations

import ast
from pathlib import Path

from .import_graph import import_graph

PACKAGE = Path(__file__).resolve().parent.parent / "identity"
CHILDREN = ("verifier", "assurance", "enrollment")  # report through host.py, not the service


def _trees() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text()) for path in sorted(PACKAGE.glob("*.py"))}


def test_children_do_not_import_the_service() -> None:
    graph = import_graph("identity")  # no circle at all: tests/test_layers.py
    for child in CHILDREN:
        assert "identity.service" not in graph[f"identity.{child}"], child


def test_no_private_member_of_another_object() -> None:
    """`self._x` is a module's own business; `self.pool._run` is reaching into the pool's."""
    for name, tree in _trees().items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not node.attr.startswith("__") and not own:
                raise AssertionError(f"identity/{name}.py:{node.lineno} uses .{node.attr}")

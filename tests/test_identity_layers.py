"""identity/ is layered one way (issue 13): the service builds its children, the children use
narrow interfaces (host.py) and shared helpers, and nothing reaches into another's privates.
The graph is read from the source text: imports inside functions and under TYPE_CHECKING count."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "identity"
CHILDREN = ("verifier", "assurance", "enrollment")  # report through host.py, not the service


def _trees() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text()) for path in sorted(PACKAGE.glob("*.py"))}


def _imports(tree: ast.Module, modules: set[str]) -> set[str]:
    """The sibling modules `tree` imports, however it spells it."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                module = node.module or ""
            elif node.level == 0 and (node.module or "").split(".")[0] == "identity":
                module = (node.module or "").partition(".")[2]
            else:
                continue
            found.add(module.split(".")[0])
            if not module:  # from . import worker
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names
                         if alias.name.startswith("identity."))
    return found & modules


def test_no_import_circle_inside_identity() -> None:
    trees = _trees()
    graph = {name: _imports(tree, set(trees)) - {name} for name, tree in trees.items()}
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"import circle in identity/: {exc.args[1]}") from None


def test_children_do_not_import_the_service() -> None:
    trees = _trees()
    for child in CHILDREN:
        assert "service" not in _imports(trees[child], set(trees)), child


def test_no_private_member_of_another_object() -> None:
    """`self._x` is a module's own business; `self.pool._run` is reaching into the pool's."""
    for name, tree in _trees().items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not node.attr.startswith("__") and not own:
                raise AssertionError(f"identity/{name}.py:{node.lineno} uses .{node.attr}")

"""identity/ is layered one way (issue 13): the service builds its children, the children use
narrow interfaces (host.py) and shared helpers, and nothing reaches into another's privates.
The graph is read from the source text: imports inside functions and under TYPE_CHECKING count."""

from __future__ import annotations

import ast
from pathlib import Path

from .import_graph import import_graph

PACKAGE = Path(__file__).resolve().parent.parent / "identity"
# Report through faces/host.py, not the service.
CHILDREN = ("doctor.verifier", "doctor.assurance", "faces.enrollment", "guardian.presence")
# The features inside identity/: face analysis below, the doctor's checks and the guardian's
# presence on it, neither knowing the other.
FORBIDDEN = {"faces": {"doctor", "guardian"}, "guardian": {"doctor"}, "doctor": {"guardian"}}


def _trees() -> dict[str, ast.Module]:
    return {str(path.relative_to(PACKAGE)): ast.parse(path.read_text())
            for path in sorted(PACKAGE.rglob("*.py"))}


def test_children_do_not_import_the_service() -> None:
    graph = import_graph("identity")  # no circle at all: tests/test_layers.py
    for child in CHILDREN:
        assert "identity.doctor.service" not in graph[f"identity.{child}"], child


def test_features_stand_on_face_analysis_alone() -> None:
    graph = import_graph("identity")
    wrong = [f"{module} imports {target}" for module, targets in graph.items()
             for target in targets
             if module.split(".")[1:2] and target.split(".")[1:2]
             and target.split(".")[1] in FORBIDDEN.get(module.split(".")[1], ())]
    assert not wrong, "\n".join(wrong)


def test_no_private_member_of_another_object() -> None:
    """`self._x` is a module's own business; `self.pool._run` is reaching into the pool's."""
    for name, tree in _trees().items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not node.attr.startswith("__") and not own:
                raise AssertionError(f"identity/{name}:{node.lineno} uses .{node.attr}")

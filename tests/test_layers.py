"""No import circles between the files of a package (issue 13).

Generic over packages: a package is added to PACKAGES once its circles are gone.
"""

from __future__ import annotations

import pytest

from .import_graph import circles, import_graph

PACKAGES = ["recorder", "identity"]


def test_circles_are_found() -> None:
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert circles(graph) == [["p.a", "p.b", "p.c"]]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circles(package: str) -> None:
    graph = import_graph(package)
    assert graph, f"{package}: no modules found"
    found = circles(graph)
    assert not found, "\n".join(
        " <-> ".join(group) + ": " + "; ".join(
            f"{m} imports {', '.join(sorted(graph[m] & set(group)))}" for m in group)
        for group in found)

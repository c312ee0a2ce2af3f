"""No import circles between the files of a package (issue 13).

Generic over packages: a package is added to PACKAGES once its circles are gone.
"""

from __future__ import annotations

import pytest

from .import_graph import circles, import_graph, imported_packages

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


# What each layer must never import (issue 13): core/ is the base, server/ the top; signaling/
# stands on core/ only. (identity/ and recorder/ still use signaling's media and rooms: the
# composition root's ports are the next step.)
FORBIDDEN = {"core": {"server", "signaling", "identity", "recorder", "bench", "tests"},
             "signaling": {"server", "identity", "recorder", "bench", "tests"},
             "identity": {"server", "bench", "tests"},
             "recorder": {"server", "bench", "tests"}}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_runs_up_a_layer(package: str) -> None:
    wrong = [f"{module} imports {target}" for module, target in imported_packages(package)
             if target in FORBIDDEN[package]]
    assert not wrong, "\n".join(wrong)

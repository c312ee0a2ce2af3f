"""No import circles between the files of a package, no import up a layer (issue 13).

Every package of the node is checked: none has a circle left.
"""

from __future__ import annotations

import pytest

from .import_graph import circles, import_graph, imported_packages

PACKAGES = ["core", "signaling", "identity", "recorder", "server"]


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


# What each layer must never import (issue 13): core/ is the base, server/ the top (the
# composition root); the features stand on core/ alone and meet only there (identity and the
# recorder see a call through core/calls.py, store files through core/objects/).
FEATURES = {"signaling", "identity", "recorder"}
FORBIDDEN = {"core": {"server", *FEATURES, "bench", "tests"},
             **{feature: {"server", *(FEATURES - {feature}), "bench", "tests"}
                for feature in sorted(FEATURES)}}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_runs_up_a_layer(package: str) -> None:
    wrong = [f"{module} imports {target}" for module, target in imported_packages(package)
             if target in FORBIDDEN[package]]
    assert not wrong, "\n".join(wrong)

"""PROTOCOL.md's message tables and the signaling models say the same, both ways.

The "Client → node" and "Node → client" tables (and the pre-call probe's two, against
server/precall_messages.py) are parsed: each row's `type`, and in its fields
cell the backticked field names, `{…}` for the fields of an object (or of each item of a list),
and in the `(…)` after a field the backticked values of an enumeration and a `≤ N` bound. The
models are read the same way (aliases, nested models, Literal values, max_length / le). A field,
message type, enumeration value or bound added to one side only fails here.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from server import precall_messages
from signaling import client_messages, server_messages

PROTOCOL_MD = Path(client_messages.__file__).with_name("PROTOCOL.md")
ENVELOPE = {"type", "id", "re"}  # every message's; described once above the tables


@dataclass
class Spec:
    """One field, as the table or a model describes it."""

    children: dict[str, Spec] | None = None
    values: set[str] = field(default_factory=set)
    bound: float | None = None


def table(section: str) -> dict[str, dict[str, Spec]]:
    """The rows of the table under `## section` (or `### section`): message type → its fields."""
    text = PROTOCOL_MD.read_text().split(f"## {section}\n", 1)[1]
    text = text.split("\n## ", 1)[0].split("\n### ", 1)[0]
    rows: dict[str, dict[str, Spec]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`(\w+)`", cells[0]) if line.startswith("|") else None
        if match:
            assert match[1] not in rows, f"{section}: '{match[1]}' has two rows"
            rows[match[1]] = {k: v for k, v in fields_cell(cells[1]).items()
                              if k not in ENVELOPE}
    return rows


def fields_cell(cell: str) -> dict[str, Spec]:
    root: dict[str, Spec] = {}
    levels: list[tuple[dict[str, Spec], Spec | None]] = [(root, None)]
    last: Spec | None = None
    depth, opened = 0, 0
    for token in re.finditer(r"`([^`]*)`|[{}()]", cell):
        mark = token[0]
        if mark == "(":
            depth += 1
            opened = token.end() if depth == 1 else opened
        elif mark == ")":
            depth -= 1
            bound = re.search(r"≤\s*([\d,]+)\s*(KiB)?", cell[opened:token.start()])
            if depth == 0 and bound and last is not None:
                last.bound = int(bound[1].replace(",", "")) * (1024 if bound[2] else 1)
        elif depth:
            if last is not None and mark.startswith("`"):
                last.values.add(token[1])
        elif mark == "{":
            assert last is not None, f"{{ before any field in: {cell}"
            last.children = {}
            levels.append((last.children, last))
        elif mark == "}":
            _, last = levels.pop()
        else:
            last = levels[-1][0].setdefault(token[1], Spec())
    return root


def model_fields(model: type[BaseModel], message: bool = False) -> dict[str, Spec]:
    specs = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        if not (message and key in ENVELOPE):
            specs[key] = _spec(info.annotation, info.metadata)
    return specs


def _spec(annotation: Any, metadata: list[Any]) -> Spec:
    spec = Spec(bound=_bound(metadata))
    for part in _parts(annotation):
        if typing.get_origin(part) is typing.Annotated:
            base, *extra = typing.get_args(part)
            inner = _spec(base, extra)
            spec.bound = spec.bound if spec.bound is not None else inner.bound
            spec.values |= inner.values
            spec.children = spec.children or inner.children
        elif typing.get_origin(part) is Literal:
            spec.values |= {v for v in typing.get_args(part) if isinstance(v, str)}
        elif typing.get_origin(part) in (list, tuple):
            item = _spec(typing.get_args(part)[0], [])
            spec.children = spec.children or item.children
        elif isinstance(part, type) and issubclass(part, BaseModel):
            spec.children = model_fields(part)
    return spec


def _parts(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _bound(metadata: list[Any]) -> float | None:
    for item in metadata:
        if isinstance(item, FieldInfo):
            found = _bound(item.metadata)
        else:
            found = next((getattr(item, a) for a in ("max_length", "le")
                          if getattr(item, a, None) is not None), None)
        if found is not None:
            return found
    return None


def models(union: Any) -> dict[str, dict[str, Spec]]:
    found = {}
    for model in typing.get_args(union):
        (kind,) = typing.get_args(model.model_fields["type"].annotation)
        found[kind] = model_fields(model, message=True)
    return found


def compare(where: str, doc: dict[str, Spec], code: dict[str, Spec],
            enumerations_documented: bool) -> list[str]:
    """The differences between the table's fields and the model's, in words."""
    problems = [f"{where}: '{n}' is in PROTOCOL.md, not in the model" for n in doc.keys() - code]
    problems += [f"{where}: '{n}' is in the model, not in PROTOCOL.md" for n in code.keys() - doc]
    for name in doc.keys() & code.keys():
        d, c, here = doc[name], code[name], f"{where}.{name}"
        if (d.values or enumerations_documented) and c.values and d.values != c.values:
            problems.append(f"{here}: values {sorted(d.values)} in PROTOCOL.md, "
                            f"{sorted(c.values)} in the model")
        if d.bound is not None and d.bound != c.bound:
            problems.append(f"{here}: ≤ {d.bound} in PROTOCOL.md, {c.bound} in the model")
        if (d.children is None) != (c.children is None):
            problems.append(f"{here}: an object in {'the model' if c.children else 'PROTOCOL.md'}"
                            " only")
        elif d.children is not None and c.children is not None:
            problems += compare(here, d.children, c.children, enumerations_documented)
    return problems


def check(section: str, union: Any, enumerations_documented: bool) -> list[str]:
    doc, code = table(section), models(union)
    problems = [f"{section}: '{t}' is in PROTOCOL.md, not a model" for t in doc.keys() - code]
    problems += [f"{section}: '{t}' is a model, not in PROTOCOL.md" for t in code.keys() - doc]
    for kind in sorted(doc.keys() & code.keys()):
        problems += compare(kind, doc[kind], code[kind], enumerations_documented)
    return problems


def test_client_table_matches_the_models() -> None:
    problems = check("Client → node", client_messages.Message, True)
    assert not problems, "\n".join(problems)


def test_server_table_matches_the_models() -> None:
    problems = check("Node → client", server_messages.Message, False)
    assert not problems, "\n".join(problems)


def test_precall_probe_tables_match_the_models() -> None:
    problems = check("Pre-call test: page → node", precall_messages.Message, True)
    problems += check("Pre-call test: node → page", precall_messages.Reply, False)
    assert not problems, "\n".join(problems)


def test_the_check_sees_drift() -> None:
    """The comparison itself: each kind of difference is reported."""
    doc = fields_cell("`reason` (`a`, `b`), `text` (string ≤ 500), `referral` {`hospital`}")
    code = fields_cell("`reason` (`a`), `text` (string ≤ 400), `referral` {`hospital`, "
                       "`note`}, `extra`")
    assert sorted(compare("m", doc, code, True)) == [
        "m.reason: values ['a', 'b'] in PROTOCOL.md, ['a'] in the model",
        "m.referral: 'note' is in the model, not in PROTOCOL.md",
        "m.text: ≤ 500 in PROTOCOL.md, 400 in the model",
        "m: 'extra' is in the model, not in PROTOCOL.md",
    ]
    terminate = models(client_messages.Message)["terminate"]
    assert terminate["referral"].children is not None
    assert terminate["referral"].children["urgency"].values == set(client_messages.URGENCIES)
    assert terminate["text"].bound == 500
    assert models(client_messages.Message)["offer"]["sdp"].bound == client_messages.MAX_SDP_BYTES

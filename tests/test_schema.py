"""sfupdate.formats.schema: one declaration per map; refusals raise the caller's class and name the
field (with its path inside nested maps and arrays)."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from sfupdate import errors
from sfupdate.formats.schema import (
    BOOL,
    UINT,
    UUID,
    Field,
    Schema,
    blob,
    enum_of,
    list_of,
    nullable,
    record,
    text,
    tuple_of,
)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Part:
    name: str
    color: Color


@dataclass(frozen=True)
class Thing:
    vendor_id: uuid.UUID
    count: int
    note: str | None
    parts: tuple[Part, ...]
    size: int | None = None


PART = Schema("part", Field("name", text(8)), Field("color", enum_of(Color)))
THING = Schema("thing", Field("vendor-id", UUID, name="vendor_id"), Field("count", UINT),
               Field("note", nullable(text())), Field("parts", list_of(record(PART, Part), 2)),
               Field(7, UINT, name="size", optional=True))
VENDOR = uuid.UUID(int=7)


def wire(**changes: Any) -> dict[Any, Any]:
    obj: dict[Any, Any] = {"vendor-id": VENDOR.bytes, "count": 3, "note": None,
                           "parts": [{"name": "a", "color": "red"}]}
    obj.update(changes)
    return obj


def test_load_builds_the_values_and_dump_gives_the_map_back() -> None:
    thing = Thing(**THING.load(wire(), errors.SchemaError))
    assert thing == Thing(VENDOR, 3, None, (Part("a", Color.RED),))
    assert THING.dump(thing) == wire()  # an absent optional field is not dumped
    assert THING.dump(Thing(VENDOR, 3, "n", (), size=9))[7] == 9


@pytest.mark.parametrize(("obj", "message"), [
    (wire(count=-1), "thing: count has the wrong type or value (must be an unsigned"),
    (wire(count=True), "thing: count has the wrong type"),
    (wire(note=b"x"), "thing: note has the wrong type or value (must be text or null)"),
    (wire(**{"vendor-id": b"short"}), "thing: vendor-id has the wrong type"),
    (wire(parts=[{"name": "a", "color": "green"}]), "thing: parts[0].color has the wrong"),
    (wire(parts=[{"name": "a" * 9, "color": "red"}]), "thing: parts[0].name has the wrong"),
    (wire(parts=[{"name": "a", "color": "red", "shade": 1}]),
     "thing: unknown key parts[0].'shade'"),
    (wire(parts=[{}] * 3), "thing: parts has the wrong type or value (must be an array of 0 "
     "to 2 items)"),
    (wire(extra=1), "thing: unknown key 'extra'"),
    ({**wire(), 7: "seven"}, "thing: size (7) has the wrong type"),
    ({"count": 1}, "thing: missing key vendor-id"),
    ([1, 2], "thing is not a map"),
])
def test_refusals_name_the_field(obj: Any, message: str) -> None:
    with pytest.raises(errors.IpcError) as raised:
        THING.load(obj, errors.IpcError)
    assert str(raised.value).startswith(message), str(raised.value)


def test_refusals_raise_the_callers_class() -> None:
    for error in (errors.StorageIntegrityError, errors.IpcError, errors.SchemaError):
        with pytest.raises(error):
            THING.load(wire(count="3"), error)


def test_a_missing_field_may_raise_its_own_class() -> None:
    with pytest.raises(errors.MissingMemberError, match="missing key count"):
        THING.load({"vendor-id": VENDOR.bytes}, errors.SchemaError,
                   missing=errors.MissingMemberError)


def test_a_record_format_may_ignore_keys_it_does_not_name() -> None:
    lenient = Schema("record", Field("on", BOOL), extra=True)
    assert lenient.load({"on": True, "format": 1, "later": "x"}, errors.SchemaError) == {
        "on": True}


def test_tuples_and_bounded_bytes() -> None:
    pair = Schema("pair", Field("p", tuple_of(text(), blob(1, 2))))
    assert pair.load({"p": ["a", b"xy"]}, errors.SchemaError) == {"p": ("a", b"xy")}
    with pytest.raises(errors.SchemaError, match=r"pair: p\[1\] has the wrong type or value "
                       r"\(must be a byte string of 1 to 2 bytes\)"):
        pair.load({"p": ["a", b"xyz"]}, errors.SchemaError)

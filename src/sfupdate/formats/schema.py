"""Declarative schemas for the CBOR maps sfupdate reads: each record or message declares its
fields once, and one loader checks them.

    SLOT = Schema("slot",
                  Field("state", one_of("confirmed", "trial")),
                  Field("sequence", nullable(UINT)),           # present, may be null
                  Field("vendor-id", UUID, name="vendor_id"),  # 16 bytes -> uuid.UUID
                  Field("note", text(80), optional=True))      # may be absent (-> None)
    values = SLOT.load(obj, IpcError)    # {"state": ..., "sequence": ..., "vendor_id": ...}
    obj = SLOT.dump(slot)                # the map again, from slot's attributes

A refusal raises the error class the caller names (a secure-storage record raises
StorageIntegrityError, an IPC message IpcError, a format SchemaError) with a message that names
the map and the field: "status: slots.B.sequence has the wrong type or value (must be an
unsigned 64-bit integer or null)". Imports nothing of ours but `sfupdate.errors`, so every
package may use it.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sfupdate.errors import SfuError

UINT64_MAX: Final = 2**64 - 1

Error = type[SfuError]
Key = str | int


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Where:
    """A place in a message, for refusals: the message (`what`) and the path to the value
    ("status reply", "status.slots.B.state")."""

    what: str
    path: str = ""

    def member(self, label: str) -> Where:
        return Where(self.what, f"{self.path}.{label}" if self.path else label)

    def item(self, index: int) -> Where:
        return Where(self.what, f"{self.path}[{index}]")

    def __str__(self) -> str:
        return f"{self.what}: {self.path}" if self.path else self.what


class Kind:
    """What one value must be: `accepts` decides, `load` converts what was accepted (e.g.
    16 bytes to a UUID) and `dump` converts back. `description` completes "must be ..."."""

    def __init__(self, description: str, accepts: Callable[[Any], bool],
                 load: Callable[[Any], Any] = _same, dump: Callable[[Any], Any] = _same) -> None:
        self.description = description
        self.accepts = accepts
        self._load = load
        self._dump = dump

    def parse(self, value: Any, at: Where, error: Error) -> Any:
        """The loaded value, or `error` saying what the value `at` must be."""
        if not self.accepts(value):
            raise error(f"{at} has the wrong type or value (must be {self.description})"[:300])
        return self._load(value)

    def unparse(self, value: Any) -> Any:
        return self._dump(value)


def integer(low: int | None = None, high: int | None = None) -> Kind:
    """An integer (never a boolean) within [low, high]."""
    def accepts(value: Any) -> bool:
        return (isinstance(value, int) and not isinstance(value, bool)
                and (low is None or value >= low) and (high is None or value <= high))
    return Kind(_bounded("an integer", low, high, "", unsigned=True), accepts)


def _bounded(what: str, low: int | None, high: int | None, unit: str,
             unsigned: bool = False) -> str:
    """A kind's description with its bounds: "a byte string of 1 to 64 bytes"."""
    if unsigned and low == 0 and high is None:
        return "an unsigned integer"
    if low == high and low is not None:
        return f"{what} of exactly {low}{unit}"
    if high is None:
        return what if not low else f"{what} of at least {low}{unit}"
    return f"{what} of {low or 0} to {high}{unit}" if unit else f"{what} in [{low}, {high}]"


#: An unsigned 64-bit integer, the usual counter or sequence number.
UINT: Final = Kind("an unsigned 64-bit integer", integer(0, UINT64_MAX).accepts)
#: Any integer (secure-storage records: their own invariants bound them).
INT: Final = integer()
BOOL: Final = Kind("a boolean", lambda value: isinstance(value, bool))
#: Any value at all (the caller checks it: a format version, say).
ANY: Final = Kind("anything", lambda value: True)
#: Any map; its contents are the caller's to check.
MAP: Final = Kind("a map", lambda value: isinstance(value, dict))


def text(max_len: int | None = None, pattern: re.Pattern[str] | None = None) -> Kind:
    """A text string of at most `max_len` characters, matching `pattern` if given."""
    def accepts(value: Any) -> bool:
        return (isinstance(value, str) and (max_len is None or len(value) <= max_len)
                and (pattern is None or pattern.fullmatch(value) is not None))
    what = "text" + (f" of at most {max_len} characters" if max_len is not None else "")
    return Kind(what + (f" matching {pattern.pattern}" if pattern else ""), accepts)


def blob(low: int = 0, high: int | None = None) -> Kind:
    """A byte string of `low` to `high` bytes."""
    def accepts(value: Any) -> bool:
        return isinstance(value, bytes) and low <= len(value) and (high is None
                                                                    or len(value) <= high)
    return Kind(_bounded("a byte string", low, high, " bytes"), accepts)


def one_of(*choices: str) -> Kind:
    return Kind(f"one of {', '.join(choices)}", lambda value: value in choices
                and isinstance(value, str))


def enum_of(cls: type[enum.Enum]) -> Kind:
    """One of an Enum's values, loaded as the member."""
    values = [member.value for member in cls]
    return Kind(f"one of {', '.join(map(str, values))}",
                lambda value: isinstance(value, str | int) and not isinstance(value, bool)
                and value in values, cls, lambda member: member.value)


#: A 16-byte UUID, loaded as a uuid.UUID.
UUID: Final = Kind("a 16-byte UUID", blob(16, 16).accepts, lambda value: uuid.UUID(bytes=value),
                   lambda value: value.bytes)


def nullable(kind: Kind) -> Kind:
    """`kind`, or null (None)."""
    return _Nullable(kind)


class _Nullable(Kind):
    def __init__(self, kind: Kind) -> None:
        super().__init__(f"{kind.description} or null", kind.accepts)
        self.kind = kind

    def parse(self, value: Any, at: Where, error: Error) -> Any:
        if value is None:
            return None
        if not self.accepts(value):
            super().parse(value, at, error)  # refuses, saying "... or null"
        return self.kind.parse(value, at, error)

    def unparse(self, value: Any) -> Any:
        return None if value is None else self.kind.unparse(value)


def list_of(kind: Kind, max_items: int | None = None, min_items: int = 0) -> Kind:
    """An array of `min_items` to `max_items` `kind` items; loaded as a tuple."""
    return _ListOf(kind, min_items, max_items)


class _ListOf(Kind):
    def __init__(self, item: Kind, min_items: int, max_items: int | None) -> None:
        super().__init__(_bounded("an array", min_items, max_items, " items"),
                         lambda value: isinstance(value, list) and min_items <= len(value)
                         and (max_items is None or len(value) <= max_items))
        self.item = item

    def parse(self, value: Any, at: Where, error: Error) -> Any:
        super().parse(value, at, error)
        return tuple(self.item.parse(v, at.item(i), error) for i, v in enumerate(value))

    def unparse(self, value: Any) -> Any:
        return [self.item.unparse(v) for v in value]


def tuple_of(*kinds: Kind) -> Kind:
    """An array of exactly one item of each kind, in order; loaded as a tuple."""
    return _TupleOf(kinds)


class _TupleOf(Kind):
    def __init__(self, kinds: tuple[Kind, ...]) -> None:
        super().__init__(f"an array of {len(kinds)} items",
                         lambda value: isinstance(value, list) and len(value) == len(kinds))
        self.kinds = kinds

    def parse(self, value: Any, at: Where, error: Error) -> Any:
        super().parse(value, at, error)
        return tuple(kind.parse(v, at.item(i), error)
                     for i, (kind, v) in enumerate(zip(self.kinds, value, strict=True)))

    def unparse(self, value: Any) -> Any:
        return [kind.unparse(v) for kind, v in zip(self.kinds, value, strict=True)]


def converted(kind: Kind, load: Callable[[Any], Any], dump: Callable[[Any], Any]) -> Kind:
    """`kind`, loaded through `load` after its own checks and dumped through `dump` first."""
    return _Converted(kind, load, dump)


class _Converted(Kind):
    def __init__(self, kind: Kind, load: Callable[[Any], Any],
                 dump: Callable[[Any], Any]) -> None:
        super().__init__(kind.description, kind.accepts, load, dump)
        self.kind = kind

    def parse(self, value: Any, at: Where, error: Error) -> Any:
        return self._load(self.kind.parse(value, at, error))

    def unparse(self, value: Any) -> Any:
        return self.kind.unparse(self._dump(value))


def record(schema: Schema, build: Callable[..., Any]) -> Kind:
    """A nested map of `schema`, loaded as `build(**fields)` and dumped from its attributes."""
    return _Record(schema, build)


class _Record(Kind):
    def __init__(self, schema: Schema, build: Callable[..., Any]) -> None:
        super().__init__("a map", MAP.accepts)
        self.schema = schema
        self.build = build

    def parse(self, value: Any, at: Where, error: Error) -> Any:
        return self.build(**self.schema.load_at(value, at, error))

    def unparse(self, value: Any) -> Any:
        return self.schema.dump(value)


@dataclass(frozen=True)
class Field:
    """One member of a map: its `key` there, its kind, the `name` it loads as (default: the
    key; needed for integer keys and keys that are not identifiers), and whether it may be
    absent (`optional`: then it loads as None, and a None attribute is not dumped)."""

    key: Key
    kind: Kind
    name: str = ""
    optional: bool = False

    @property
    def attribute(self) -> str:
        return self.name or str(self.key)

    @property
    def label(self) -> str:
        """How refusals name it: the key, or for an integer key its name and the key."""
        return str(self.key) if isinstance(self.key, str) else f"{self.name} ({self.key})"


class Schema:
    """A map's fields. `extra=True` ignores keys the schema does not name (a record format
    that may grow); by default an unknown key is refused."""

    def __init__(self, what: str, *fields: Field, extra: bool = False) -> None:
        self.what = what
        self.fields = fields
        self.extra = extra
        self.keys = frozenset(f.key for f in fields)

    def load(self, obj: Any, error: Error, *, where: str | None = None,
             missing: Error | None = None) -> dict[str, Any]:
        """The fields' values by name, or `error` naming the first field that is wrong;
        `missing` is the class for an absent required field (default `error`)."""
        return self.load_at(obj, Where(where or self.what), error, missing)

    def load_at(self, obj: Any, at: Where, error: Error,
                missing: Error | None = None) -> dict[str, Any]:
        """`load` of a map found `at` a place in a larger one."""
        if not isinstance(obj, dict):
            raise error(f"{at} is not a map")
        if not self.extra:
            for key in obj:
                if key not in self.keys:
                    raise error(f"{at.what}: unknown key {at.member(repr(key)).path}"[:200])
        values: dict[str, Any] = {}
        for field in self.fields:
            if field.key not in obj:
                if not field.optional:
                    raise (missing or error)(
                        f"{at.what}: missing key {at.member(field.label).path}")
                values[field.attribute] = None
                continue
            values[field.attribute] = field.kind.parse(obj[field.key], at.member(field.label),
                                                       error)
        return values

    def dump(self, source: Any) -> dict[Any, Any]:
        """The map of `source`'s attributes (or a Mapping's items) named by the fields."""
        def get(name: str) -> Any:
            return source[name] if isinstance(source, Mapping) else getattr(source, name)
        obj: dict[Any, Any] = {}
        for field in self.fields:
            value = get(field.attribute)
            if value is None and field.optional:
                continue
            obj[field.key] = field.kind.unparse(value)
        return obj

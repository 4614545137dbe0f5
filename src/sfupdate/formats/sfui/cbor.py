"""Strict, bounded CBOR: the only door through which untrusted bytes become Python objects.

SUIT asks for deterministic CBOR (RFC 8949 section 4.2.1). We hold every input to it: definite
lengths only, shortest heads, map keys unique and in bytewise order, no floats, no trailing
bytes, bounded nesting, and only the tags SUIT and COSE use, each where it belongs (loads takes
the allowed tags). A structural walk checks all of that *before* cbor2 sees the bytes, so cbor2
only ever decodes inputs already known to be small, shallow and well formed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

import cbor2

from sfupdate.errors import EncodingError, LimitExceededError, TruncatedError, UnknownTagError


class Readable(Protocol):
    """What the streaming readers use of a byte stream: `read(n)` returns up to n bytes (all
    that is left for n < 0), and b"" only at the end. A file opened "rb" is one; so are the
    agent's chunk stream and the slot and copy adapters."""

    def read(self, n: int = -1, /) -> bytes: ...


MAJOR_UINT: Final = 0
MAJOR_NINT: Final = 1
MAJOR_BSTR: Final = 2
MAJOR_TSTR: Final = 3
MAJOR_ARRAY: Final = 4
MAJOR_MAP: Final = 5
MAJOR_TAG: Final = 6
MAJOR_SIMPLE: Final = 7

TAG_COSE_SIGN1: Final = 18
TAG_COSE_MAC0: Final = 17
TAG_SUIT_ENVELOPE: Final = 107
TAG_CBOR_PEN: Final = 112
#: Tags loads() allows by default: the SUIT envelope and COSE Sign1/Mac0/Sign/Mac.
DEFAULT_TAGS: Final = frozenset({TAG_SUIT_ENVELOPE, TAG_COSE_MAC0, TAG_COSE_SIGN1, 97, 98})
#: Tags allowed in a SUIT command sequence: only a CBOR PEN (RFC 9090 relative OID), which the
#: draft allows as a vendor-id parameter; sfupdate.formats.sfui.model refuses it anywhere else.
SEQUENCE_TAGS: Final = frozenset({TAG_CBOR_PEN})

MAX_DEPTH: Final = 16
MAX_ITEMS: Final = 100_000

_SIMPLE_ALLOWED: Final = frozenset({20, 21, 22})  # false, true, null


def encode_head(major: int, value: int) -> bytes:
    """Shortest CBOR head for (major type, argument); works for any 64-bit argument."""
    if value < 0:
        raise ValueError("CBOR head argument must be non-negative")
    mt = major << 5
    if value < 24:
        return bytes([mt | value])
    for ai, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * width):
            return bytes([mt | ai]) + value.to_bytes(width, "big")
    raise ValueError("CBOR head argument exceeds 64 bits")


def _parse_head(initial: int, extra: bytes) -> int:
    ai = initial & 0x1F
    value = int.from_bytes(extra, "big") if extra else ai
    if ai >= 24 and (
        (ai == 24 and value < 24) or (ai > 24 and value < 1 << (8 * (1 << (ai - 25))))
    ):
        raise EncodingError("non-deterministic CBOR: a length or integer is not shortest")
    return value


def _extra_length(initial: int) -> int:
    ai = initial & 0x1F
    if ai < 24:
        return 0
    if ai <= 27:
        return 1 << (ai - 24)
    if ai == 31:
        raise EncodingError("indefinite-length CBOR item (not allowed in deterministic CBOR)")
    raise EncodingError(f"reserved CBOR additional information value {ai}")


def read_exact(stream: Readable, n: int, what: str) -> bytes:
    """Read exactly n bytes or raise TruncatedError naming what was being read."""
    parts = []
    remaining = n
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise TruncatedError(f"input ends inside the {what} ({n - remaining} of {n} bytes)")
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def read_head(stream: Readable, what: str) -> tuple[int, int, bytes]:
    """Read one CBOR head from a stream: (major type, argument, the raw head bytes)."""
    first = read_exact(stream, 1, what)
    extra = read_exact(stream, _extra_length(first[0]), what)
    return first[0] >> 5, _parse_head(first[0], extra), first + extra


class _Walker:
    """Walks one encoded item checking well-formedness and determinism without recursion
    into Python objects; returns the end offset."""

    def __init__(self, data: bytes, max_depth: int, tags: frozenset[int],
                 key_order: bool = True) -> None:
        self.data = data
        self.max_depth = max_depth
        self.tags = tags
        self.key_order = key_order
        self.items = 0

    def head(self, pos: int) -> tuple[int, int, int]:
        if pos >= len(self.data):
            raise TruncatedError("CBOR item ends early")
        initial = self.data[pos]
        n = _extra_length(initial)
        if pos + 1 + n > len(self.data):
            raise TruncatedError("CBOR head ends early")
        value = _parse_head(initial, self.data[pos + 1 : pos + 1 + n])
        return initial >> 5, value, pos + 1 + n

    def item(self, pos: int, depth: int) -> int:
        if depth > self.max_depth:
            raise LimitExceededError(f"CBOR nesting deeper than {self.max_depth}")
        self.items += 1
        if self.items > MAX_ITEMS:
            raise LimitExceededError(f"more than {MAX_ITEMS} CBOR items")
        major, value, pos = self.head(pos)
        if major in (MAJOR_UINT, MAJOR_NINT):
            return pos
        if major in (MAJOR_BSTR, MAJOR_TSTR):
            end = pos + value
            if end > len(self.data):
                raise TruncatedError("CBOR string runs past the end of its container")
            if major == MAJOR_TSTR:
                try:
                    self.data[pos:end].decode("utf-8")
                except UnicodeDecodeError:
                    raise EncodingError("CBOR text string is not valid UTF-8") from None
            return end
        if major == MAJOR_ARRAY:
            self._check_count(value, pos)
            for _ in range(value):
                pos = self.item(pos, depth + 1)
            return pos
        if major == MAJOR_MAP:
            self._check_count(2 * value, pos)
            previous: bytes | None = None
            seen: set[bytes] = set()
            for _ in range(value):
                key_start = pos
                pos = self.item(pos, depth + 1)
                key = self.data[key_start:pos]
                if not self.key_order:
                    if key in seen:
                        raise EncodingError("duplicate key in a CBOR map")
                    seen.add(key)
                elif previous is not None and key <= previous:
                    if key == previous:
                        raise EncodingError("duplicate key in a CBOR map")
                    raise EncodingError("CBOR map keys are not in deterministic (bytewise) order")
                previous = key
                pos = self.item(pos, depth + 1)
            return pos
        if major == MAJOR_TAG:
            if value not in self.tags:
                raise UnknownTagError(f"unexpected CBOR tag {value}")
            return self.item(pos, depth + 1)
        # major 7: only false/true/null; floats and other simple values have no place in SUIT.
        if (self.data[pos - 1] & 0x1F) >= 24 or value not in _SIMPLE_ALLOWED:
            raise EncodingError("CBOR float or unassigned simple value")
        return pos

    def _check_count(self, count: int, pos: int) -> None:
        # Every item takes at least one byte: a count larger than what is left is a lie.
        if count > len(self.data) - pos:
            raise TruncatedError("CBOR container declares more items than bytes remain")


def loads(data: bytes, what: str, max_depth: int = MAX_DEPTH,
          tags: frozenset[int] = DEFAULT_TAGS, key_order: bool = True) -> Any:
    """Decode one complete, deterministic CBOR item, or raise a precise FormatError. Only the
    given tags may appear in it. `key_order=False` accepts map keys in any order (still
    unique): for COSE structures from other encoders, which RFC 9052 does not hold to
    deterministic order, nested in a manifest that is."""
    try:
        end = _Walker(data, max_depth, tags, key_order).item(0, 0)
    except TruncatedError as exc:
        raise TruncatedError(f"{what}: {exc}") from None
    except (EncodingError, LimitExceededError, UnknownTagError) as exc:
        raise type(exc)(f"{what}: {exc}") from None
    if end != len(data):
        raise EncodingError(f"{what}: {len(data) - end} trailing bytes after the CBOR item")
    try:
        return _thaw(cbor2.loads(data))
    except Exception as exc:  # cbor2 has already been handed only well-formed input
        raise EncodingError(f"{what}: undecodable CBOR ({exc})") from None


def _thaw(obj: Any, as_key: bool = False) -> Any:
    """One shape whatever the cbor2 version: arrays are lists (tuples when used as map keys),
    maps are dicts. cbor2 6 returns tuples and frozendicts inside tags, cbor2 5 does not."""
    if isinstance(obj, (list, tuple)):
        items = [_thaw(v, as_key) for v in obj]
        return tuple(items) if as_key else items
    if isinstance(obj, Mapping):
        return {_thaw(k, True): _thaw(v) for k, v in obj.items()}
    if isinstance(obj, cbor2.CBORTag):
        return cbor2.CBORTag(obj.tag, _thaw(obj.value, as_key))
    return obj


def _sorted(obj: Any) -> Any:
    if isinstance(obj, dict):
        items = [(dumps(k), k, _sorted(v)) for k, v in obj.items()]
        items.sort(key=lambda item: item[0])
        return {k: v for _, k, v in items}
    if isinstance(obj, (list, tuple)):
        return [_sorted(v) for v in obj]
    if isinstance(obj, cbor2.CBORTag):
        return cbor2.CBORTag(obj.tag, _sorted(obj.value))
    return obj


def dumps(obj: Any) -> bytes:
    """Deterministic encoding (RFC 8949 4.2.1: shortest heads, keys in bytewise order)."""
    return cbor2.dumps(_sorted(obj))


def bstr_wrap(content: bytes) -> bytes:
    """Encode bytes as a CBOR byte string (head + content)."""
    return encode_head(MAJOR_BSTR, len(content)) + content

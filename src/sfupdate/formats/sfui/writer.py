"""Streaming SFUI writer: small members first, then the integrated payload, copied through."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import BinaryIO

from sfupdate.formats.sfui import cbor, suit


@dataclass(frozen=True)
class PayloadSource:
    """An integrated payload: its envelope key (equal to the URI that references it, e.g.
    "#firmware"), exact length and its bytes."""

    key: str
    length: int
    chunks: Iterable[bytes]


def envelope_prefix(members: Mapping[int, bytes], payload_key: str | None,
                    payload_length: int) -> bytes:
    """Everything of the envelope up to (and including) the payload's byte-string head."""
    unknown = set(members) - suit.ENVELOPE_MEMBERS
    if unknown:
        raise ValueError(f"unknown envelope members {sorted(unknown)}")
    count = len(members) + (1 if payload_key is not None else 0)
    parts = [cbor.encode_head(cbor.MAJOR_TAG, cbor.TAG_SUIT_ENVELOPE),
             cbor.encode_head(cbor.MAJOR_MAP, count)]
    for key in sorted(members):  # small unsigned ints: numeric order is bytewise order
        parts += [cbor.encode_head(cbor.MAJOR_UINT, key), cbor.bstr_wrap(members[key])]
    if payload_key is not None:
        raw_key = payload_key.encode("utf-8")
        parts += [cbor.encode_head(cbor.MAJOR_TSTR, len(raw_key)), raw_key,
                  cbor.encode_head(cbor.MAJOR_BSTR, payload_length)]
    return b"".join(parts)


def write_envelope(out: BinaryIO, members: Mapping[int, bytes],
                   payload: PayloadSource | None = None) -> int:
    """Write a complete envelope; returns the number of bytes written."""
    prefix = envelope_prefix(members, payload.key if payload else None,
                             payload.length if payload else 0)
    out.write(prefix)
    written = len(prefix)
    if payload is not None:
        copied = 0
        for chunk in payload.chunks:
            copied += len(chunk)
            if copied > payload.length:
                raise ValueError("payload source yielded more bytes than declared")
            out.write(chunk)
        if copied != payload.length:
            raise ValueError("payload source yielded fewer bytes than declared")
        written += copied
    return written

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
                    payload_length: int, payloads: int = 1) -> bytes:
    """Everything of the envelope up to (and including) the first payload's byte-string head;
    `payloads` integrated payloads follow in all (each later one after its `payload_head`)."""
    unknown = set(members) - suit.ENVELOPE_MEMBERS
    if unknown:
        raise ValueError(f"unknown envelope members {sorted(unknown)}")
    count = len(members) + (payloads if payload_key is not None else 0)
    parts = [cbor.encode_head(cbor.MAJOR_TAG, cbor.TAG_SUIT_ENVELOPE),
             cbor.encode_head(cbor.MAJOR_MAP, count)]
    for key in sorted(members):  # small unsigned ints: numeric order is bytewise order
        parts += [cbor.encode_head(cbor.MAJOR_UINT, key), cbor.bstr_wrap(members[key])]
    if payload_key is not None:
        parts.append(payload_head(payload_key, payload_length))
    return b"".join(parts)


def payload_head(key: str, length: int) -> bytes:
    """An integrated payload's envelope key and the head of its byte string."""
    raw_key = key.encode("utf-8")
    return (cbor.encode_head(cbor.MAJOR_TSTR, len(raw_key)) + raw_key
            + cbor.encode_head(cbor.MAJOR_BSTR, length))


def payload_order(keys: Iterable[str]) -> list[str]:
    """Integrated payload keys in the envelope's deterministic order (RFC 8949 §4.2.1: by
    their encoded bytes, so a shorter key first)."""
    return sorted(keys, key=lambda key: payload_head(key, 0))


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

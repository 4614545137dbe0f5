"""Build envelopes by hand, including hostile ones, for format tests."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import cbor2

from sfupdate.authoring.author import ImageSpec
from sfupdate.authoring.author.sign import PAYLOAD_URI, build_manifest
from sfupdate.formats.sfui import Digest, EnvelopeReader, TrustedKey, cbor, manifest_digest, suit
from sfupdate.formats.sfui.cose import Signer, sign1
from sfupdate.formats.sfui.writer import envelope_prefix
from tests.world import CLASS, VENDOR


def manifest_for(payload: bytes, sequence: int = 1) -> bytes:
    spec = ImageSpec(sequence, VENDOR, CLASS)
    return build_manifest(spec, hashlib.sha256(payload).digest(), len(payload), None).encode()


def auth_for(manifest: bytes, signer: Signer) -> bytes:
    digest = Digest(manifest_digest(manifest)).encode()
    return cbor.dumps([digest, sign1(digest, signer)])


def envelope(manifest: bytes, signer: Signer | None, payload: bytes | None = b"",
             members: dict[int, bytes] | None = None) -> bytes:
    """An SFUI with the given manifest, signed by signer (None: no auth wrapper)."""
    all_members = dict(members or {})
    all_members[suit.ENV_MANIFEST] = manifest
    if signer is not None:
        all_members.setdefault(suit.ENV_AUTHENTICATION, auth_for(manifest, signer))
    if payload is None:
        return envelope_prefix(all_members, None, 0)
    return envelope_prefix(all_members, PAYLOAD_URI, len(payload)) + payload


def read(data: bytes, trusted: list[TrustedKey]) -> bytes:
    """Authenticate and read a whole envelope; returns the payload."""
    reader = EnvelopeReader(io.BytesIO(data))
    reader.authenticate(trusted)
    return b"".join(reader.payload(chunk_size=7))


def manifest_with(payload: bytes, **changes: Any) -> bytes:
    """Our manifest with top-level members replaced (raw CBOR values)."""
    obj = cbor2.loads(manifest_for(payload))
    obj.update(changes)
    return cbor.dumps(obj)

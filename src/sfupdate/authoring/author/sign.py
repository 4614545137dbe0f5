"""Sign a firmware file into an SFUI, streaming: memory stays flat for any image size.

One pass: the payload is hashed while it is copied to its place in the envelope, and the
signed header is written in front of it at the end (see sign_firmware).
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from sfupdate.authoring.author.atomic import atomic_output
from sfupdate.errors import UsageError
from sfupdate.formats.sfui import cbor, suit
from sfupdate.formats.sfui.cose import ALGORITHM_NAMES, Signer, sign1
from sfupdate.formats.sfui.encoding import PayloadEncoding
from sfupdate.formats.sfui.model import (
    Command,
    Common,
    ComponentId,
    Digest,
    LocalizedText,
    Manifest,
    Text,
)
from sfupdate.formats.sfui.reader import manifest_digest
from sfupdate.formats.sfui.writer import envelope_prefix
from sfupdate.progress import Progress, no_progress

#: The integrated payload's URI, a fragment-only reference; as draft-ietf-suit-manifest
#: requires, the payload's envelope key is this same string.
PAYLOAD_URI: Final = "#firmware"
COMPONENT: Final = (b"firmware",)
CHUNK: Final = 1024 * 1024
#: Raw signature size of every algorithm sfupdate signs with (ECDSA P-256 r||s, Ed25519).
SIGNATURE_SIZE: Final = 64
TEXT_LANGUAGE: Final = "en"


@dataclass(frozen=True)
class ImageSpec:
    """What the author states about an image; the digest and size are measured."""

    sequence_number: int
    vendor_id: uuid.UUID
    class_id: uuid.UUID
    version_text: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class SignedImage:
    path: Path
    manifest: Manifest
    image_digest: bytes
    image_size: int
    envelope_size: int


def build_manifest(spec: ImageSpec, image_digest: bytes, image_size: int,
                   text: Text | None, encoding: PayloadEncoding | None = None) -> Manifest:
    """The sfupdate profile of a SUIT manifest: one component, integrated payload (encoded
    for transport as `encoding` says, if given: docs/suit-notes.md)."""
    if not 0 <= spec.sequence_number < 1 << 64:
        raise UsageError("sequence number must be an unsigned 64-bit integer")
    report = suit.REPORT_ALL
    shared = (
        Command(suit.DIR_OVERRIDE_PARAMETERS, {
            suit.PARAM_VENDOR_ID: spec.vendor_id.bytes,
            suit.PARAM_CLASS_ID: spec.class_id.bytes,
            suit.PARAM_IMAGE_DIGEST: Digest(image_digest).encode(),
            suit.PARAM_IMAGE_SIZE: image_size,
        }),
        Command(suit.COND_VENDOR_ID, report),
        Command(suit.COND_CLASS_ID, report),
    )
    fetch: dict[int, Any] = {suit.PARAM_URI: PAYLOAD_URI}
    if encoding is not None:
        key, value = encoding.parameter()
        fetch[key] = value
    install = (
        Command(suit.DIR_OVERRIDE_PARAMETERS, fetch),
        Command(suit.DIR_FETCH, report),
        Command(suit.COND_IMAGE_MATCH, report),
    )
    text_digest = Digest(hashlib.sha256(cbor.bstr_wrap(text.encode())).digest()) if text else None
    return Manifest(
        sequence_number=spec.sequence_number,
        common=Common((COMPONENT,), shared),
        validate=(Command(suit.COND_IMAGE_MATCH, report),),
        invoke=(Command(suit.DIR_INVOKE, report),),
        install=install,
        text=text_digest,
    )


def _text(spec: ImageSpec) -> Text | None:
    entries: dict[int, str] = {}
    if spec.description:
        entries[suit.TEXT_MANIFEST_DESCRIPTION] = spec.description
    components: dict[ComponentId, Mapping[int, str]] = {}
    if spec.version_text:
        components[COMPONENT] = {suit.TEXT_COMPONENT_VERSION: spec.version_text}
    if not entries and not components:
        return None
    return Text({TEXT_LANGUAGE: LocalizedText(entries, components)})


class _Placeholder:
    """Stands in for the real signer while the envelope's length is worked out: same
    algorithm and key ID, a signature of the same (fixed) size."""

    def __init__(self, signer: Signer) -> None:
        self.algorithm, self.kid = signer.algorithm, signer.kid

    def sign(self, data: bytes) -> bytes:
        return bytes(SIGNATURE_SIZE)


def envelope_header(spec: ImageSpec, digest: bytes, size: int, signer: Signer,
                    encoding: PayloadEncoding | None = None,
                    payload_length: int | None = None) -> tuple[Manifest, bytes]:
    """The signed manifest and everything of the envelope before the payload's bytes (an
    encoded payload's length may differ from the image's `size`)."""
    text = _text(spec)
    manifest = build_manifest(spec, digest, size, text, encoding)
    manifest_bytes = manifest.encode()
    digest_bytes = Digest(manifest_digest(manifest_bytes)).encode()
    auth = cbor.dumps([digest_bytes, sign1(digest_bytes, signer)])
    members = {suit.ENV_AUTHENTICATION: auth, suit.ENV_MANIFEST: manifest_bytes}
    if text is not None:
        members[suit.ENV_TEXT] = text.encode()
    return manifest, envelope_prefix(members, PAYLOAD_URI,
                                     size if payload_length is None else payload_length)


def _stream_payload(src: io.FileIO, dst: BinaryIO, size: int, progress: Progress) -> bytes:
    """Copy exactly `size` bytes while hashing them; the digest of what was written."""
    hasher = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    done = 0
    while n := src.readinto(buffer):
        if done + n > size:
            raise UsageError("firmware file grew while it was being signed")
        hasher.update(view[:n])
        dst.write(view[:n])
        done += n
        progress(done, size)
    if done != size:
        raise UsageError("firmware file shrank while it was being signed")
    return hasher.digest()


def sign_firmware(firmware: Path, output: Path, signer: Signer, spec: ImageSpec,
                  progress: Progress = no_progress) -> SignedImage:
    """Sign in one pass over the firmware, written atomically (temp file, fsync, rename).

    The manifest carries the payload's digest yet precedes the payload. Every field of the
    envelope prefix has a size known before hashing (the digest is 32 bytes, the image size is
    the file's, the signature has a fixed size), so the payload is copied and hashed at its
    final offset first, and the real prefix is written in front of it at the end."""
    if signer.algorithm not in ALGORITHM_NAMES:
        raise UsageError(f"signer algorithm {signer.algorithm} is not supported")
    try:
        src = open(firmware, "rb", buffering=0)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UsageError(f"cannot read firmware {firmware}: {exc.strerror}") from None
    with atomic_output(output, firmware) as tmp, src, open(tmp, "wb") as dst:
        size = os.fstat(src.fileno()).st_size
        _, placeholder = envelope_header(spec, bytes(32), size, _Placeholder(signer))
        dst.seek(len(placeholder))
        digest = _stream_payload(src, dst, size, progress)
        manifest, prefix = envelope_header(spec, digest, size, signer)
        if len(prefix) != len(placeholder):
            raise UsageError("the signer made a signature of an unexpected size")
        dst.seek(0)
        dst.write(prefix)
        dst.flush()
        os.fsync(dst.fileno())
    return SignedImage(output, manifest, digest, size, len(prefix) + size)

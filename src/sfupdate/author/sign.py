"""Sign a firmware file into an SFUI, streaming: memory stays flat for any image size.

Pass 1 hashes the firmware (the manifest must carry its digest and precedes the payload);
pass 2 copies it into the envelope with copy_file_range, so the kernel moves the bytes.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sfupdate.errors import UsageError
from sfupdate.progress import Progress, no_progress
from sfupdate.sfui import cbor, suit
from sfupdate.sfui.cose import Signer, sign1
from sfupdate.sfui.model import (
    Command,
    Common,
    ComponentId,
    Digest,
    LocalizedText,
    Manifest,
    Text,
)
from sfupdate.sfui.reader import manifest_digest
from sfupdate.sfui.writer import envelope_prefix

PAYLOAD_KEY: Final = "firmware"
COMPONENT: Final = (b"firmware",)
CHUNK: Final = 1024 * 1024
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
                   text: Text | None) -> Manifest:
    """The sfupdate profile of a SUIT manifest: one component, integrated payload."""
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
    install = (
        Command(suit.DIR_OVERRIDE_PARAMETERS, {suit.PARAM_URI: "#" + PAYLOAD_KEY}),
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


def hash_file(path: Path, progress: Progress = no_progress) -> tuple[bytes, int]:
    hasher = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    size = 0
    total = path.stat().st_size
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            hasher.update(view[:n])
            size += n
            progress(size, total)
    return hasher.digest(), size


def _copy(src: int, dst: int, length: int, progress: Progress) -> None:
    offset = 0
    while offset < length:
        try:
            n = os.copy_file_range(src, dst, min(length - offset, 64 * CHUNK))
        except OSError:
            n = _copy_slow(src, dst, length - offset)
        if n == 0:
            raise UsageError("firmware file shrank while it was being signed")
        offset += n
        progress(offset, length)


def _copy_slow(src: int, dst: int, limit: int) -> int:
    data = os.read(src, min(limit, CHUNK))
    os.write(dst, data)
    return len(data)


def sign_firmware(firmware: Path, output: Path, signer: Signer, spec: ImageSpec,
                  progress: Progress = no_progress) -> SignedImage:
    """Write output atomically (temp file, fsync, rename)."""
    try:
        digest, size = hash_file(firmware, progress=lambda d, t: progress(d // 2, t))
    except OSError as exc:
        raise UsageError(f"cannot read firmware {firmware}: {exc.strerror}") from None
    text = _text(spec)
    manifest = build_manifest(spec, digest, size, text)
    manifest_bytes = manifest.encode()
    digest_bytes = Digest(manifest_digest(manifest_bytes)).encode()
    auth = cbor.dumps([digest_bytes, sign1(digest_bytes, signer)])
    members = {suit.ENV_AUTHENTICATION: auth, suit.ENV_MANIFEST: manifest_bytes}
    if text is not None:
        members[suit.ENV_TEXT] = text.encode()
    prefix = envelope_prefix(members, PAYLOAD_KEY, size)
    tmp = output.with_name(f".{output.name}.tmp{os.getpid()}")
    try:
        with open(firmware, "rb") as src, open(tmp, "wb") as dst:
            dst.write(prefix)
            dst.flush()
            _copy(src.fileno(), dst.fileno(), size,
                  lambda d, t: progress(size // 2 + d // 2, size))
            os.fsync(dst.fileno())
        os.replace(tmp, output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {output}: {exc.strerror}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return SignedImage(output, manifest, digest, size, len(prefix) + size)

"""Sign a firmware file into an SFUI, streaming: memory stays flat for any image size.

One pass: the payload is hashed while it is copied to its place in the envelope, and the
signed header is written in front of it at the end (see sign_firmware).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from sfupdate.authoring.author.atomic import atomic_output
from sfupdate.authoring.author.encrypt import PayloadEncryption
from sfupdate.errors import UsageError
from sfupdate.formats.sfui import cbor, suit
from sfupdate.formats.sfui.cose import ALGORITHM_NAMES, Signer, sign1
from sfupdate.formats.sfui.encoding import PayloadEncoding
from sfupdate.formats.sfui.hashing import DEPTH, BackgroundHash
from sfupdate.formats.sfui.model import (
    Command,
    Common,
    ComponentId,
    Digest,
    LocalizedText,
    Manifest,
    Text,
)
from sfupdate.formats.sfui.reader import MAX_AUTH_BLOCKS, manifest_digest
from sfupdate.formats.sfui.writer import envelope_prefix
from sfupdate.progress import Progress, no_progress
from sfupdate.writeback import start_writeback

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
                   text: Text | None, encryption_info: bytes | None = None,
                   encoding: PayloadEncoding | None = None) -> Manifest:
    """The sfupdate profile of a SUIT manifest: one component, integrated payload (decrypted
    on the way in with `encryption_info`, encoded for transport as `encoding` says, if given:
    docs/suit-notes.md)."""
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
    if encryption_info is not None:
        fetch[suit.PARAM_ENCRYPTION_INFO] = encryption_info
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


def envelope_header(spec: ImageSpec, digest: bytes, size: int, signers: Sequence[Signer],
                    encryption: PayloadEncryption | None = None,
                    encoding: PayloadEncoding | None = None,
                    payload_length: int | None = None) -> tuple[Manifest, bytes]:
    """The signed manifest and everything of the envelope before the payload's bytes: the
    authentication wrapper holds one COSE_Sign1 per signer after the digest. The payload is
    `size` bytes (plus an AEAD tag if encrypted), or `payload_length`, encoded."""
    text = _text(spec)
    info = encryption.info.encode() if encryption is not None else None
    manifest = build_manifest(spec, digest, size, text, info, encoding)
    members = signed_members(manifest, text, signers)
    overhead = encryption.overhead if encryption is not None else 0
    return manifest, envelope_prefix(members, PAYLOAD_URI,
                                     size + overhead if payload_length is None
                                     else payload_length)


def _stream_payload(src: io.FileIO, dst: BinaryIO, size: int, progress: Progress,
                    encryption: PayloadEncryption | None) -> bytes:
    """Copy exactly `size` bytes while hashing them (encrypted on the way, if asked: the
    digest is always the plaintext's); the digest of what was read. Hashing runs on a second
    thread while this one reads and writes (formats/sfui/hashing.py)."""
    encryptor = encryption.encryptor() if encryption is not None else None
    buffers = [memoryview(bytearray(CHUNK)) for _ in range(DEPTH + 1)]
    done = 0
    with BackgroundHash(DEPTH) as hasher:
        for turn in itertools.count():
            buffer = buffers[turn % len(buffers)]  # its hash is done: DEPTH updates since
            n = src.readinto(buffer)
            if not n:
                break
            if done + n > size:
                raise UsageError("firmware file grew while it was being signed")
            hasher.update(buffer[:n])
            data = encryptor.update(buffer[:n]) if encryptor is not None else buffer[:n]
            at = dst.tell()
            dst.write(data)
            dst.flush()
            start_writeback(dst.fileno(), at, at + len(data))
            done += n
            progress(done, size)
        if done != size:
            raise UsageError("firmware file shrank while it was being signed")
        if encryptor is not None:
            dst.write(encryptor.finish())
        return hasher.digest()


def _check_signers(signers: Sequence[Signer]) -> None:
    for each in signers:
        if each.algorithm not in ALGORITHM_NAMES:
            raise UsageError(f"signer algorithm {each.algorithm} is not supported")
    if len({each.kid for each in signers}) != len(signers):
        raise UsageError("the same key is given twice: a threshold counts distinct keys")
    if len(signers) > MAX_AUTH_BLOCKS:
        raise UsageError(f"at most {MAX_AUTH_BLOCKS} signatures fit an SFUI")


def signed_members(manifest: Manifest, text: Text | None,
                   signers: Sequence[Signer]) -> dict[int, bytes]:
    """The envelope's members before its payloads: the authentication wrapper (the manifest
    digest, then one COSE_Sign1 per signer), the manifest, and the text if any."""
    manifest_bytes = manifest.encode()
    digest_bytes = Digest(manifest_digest(manifest_bytes)).encode()
    auth = cbor.dumps([digest_bytes, *(sign1(digest_bytes, s) for s in signers)])
    members = {suit.ENV_AUTHENTICATION: auth, suit.ENV_MANIFEST: manifest_bytes}
    if text is not None:
        members[suit.ENV_TEXT] = text.encode()
    return members


def write_prefix(dst: BinaryIO, prefix: bytes, reserved: int) -> None:
    """Write the real envelope prefix over the `reserved` bytes its placeholder took before
    the payload, and make the file durable. The signatures must have the placeholder's size,
    or the prefix would overwrite the payload."""
    if len(prefix) != reserved:
        raise UsageError("the signer made a signature of an unexpected size")
    dst.seek(0)
    dst.write(prefix)
    dst.flush()
    os.fsync(dst.fileno())


def sign_firmware(firmware: Path, output: Path, signer: Signer, spec: ImageSpec,
                  progress: Progress = no_progress,
                  cosigners: Sequence[Signer] = (),
                  encryption: PayloadEncryption | None = None) -> SignedImage:
    """Sign in one pass over the firmware, written atomically (temp file, fsync, rename).
    `cosigners` add their own COSE_Sign1 blocks (for a device whose firmware threshold is
    above one), each by a distinct key.

    The manifest carries the payload's digest yet precedes the payload. Every field of the
    envelope prefix has a size known before hashing (the digest is 32 bytes, the image size is
    the file's, the signature has a fixed size), so the payload is copied and hashed at its
    final offset first, and the real prefix is written in front of it at the end."""
    signers = (signer, *cosigners)
    _check_signers(signers)
    try:
        src = open(firmware, "rb", buffering=0)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UsageError(f"cannot read firmware {firmware}: {exc.strerror}") from None
    with atomic_output(output, firmware) as tmp, src, open(tmp, "wb") as dst:
        size = os.fstat(src.fileno()).st_size
        _, placeholder = envelope_header(spec, bytes(32), size,
                                         [_Placeholder(each) for each in signers], encryption)
        dst.seek(len(placeholder))
        digest = _stream_payload(src, dst, size, progress, encryption)
        manifest, prefix = envelope_header(spec, digest, size, signers, encryption)
        write_prefix(dst, prefix, len(placeholder))
    overhead = encryption.overhead if encryption is not None else 0
    return SignedImage(output, manifest, digest, size, len(prefix) + size + overhead)

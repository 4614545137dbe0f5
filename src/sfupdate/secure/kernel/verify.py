"""Verification of what sits on the board's storage, in one place for the boot code and the
agent: a slot against the facts recorded for it in secure storage, and the agent bundle
against the root-key hash fused in OTP.

The slot's stored SFUI header is only an input to this re-verification: it must verify with
the signer recorded when the image was authenticated (while that is an active anchor) and
describe exactly the recorded image; the slot's bytes must hash to the signed digest. On a
board of several components a slot side holds a set: each component is checked that way
against its own record and its own stored header. No decision elsewhere reads a header.
Reads are streamed; memory stays flat for any size.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from sfupdate.errors import (
    AuthenticationError,
    DeviceStateError,
    DowngradeError,
    PayloadDigestError,
    UnknownKeyError,
    WrongClassError,
)
from sfupdate.formats.sfui import (
    EnvelopeReader,
    ImageInfo,
    TrustedKey,
    manifest_digest,
)
from sfupdate.formats.sfui.components import parts
from sfupdate.formats.sfui.uuids import AGENT_CLASS, AGENT_VENDOR, check_identity
from sfupdate.secure.board.hal import Board, Fuse, Slot, Slots
from sfupdate.secure.board.records import BundleRecord, ComponentRecord, DeviceInfo, ImageRecord
from sfupdate.secure.board.slotio import ChainStream

#: The sim's firmware health hook: an image is unhealthy if its bytes contain this marker
#: anywhere (the stand-in for running it; demo images carry it to show a revert).
HEALTH_FAIL_MARKER: Final = b"SFU-HEALTH:FAIL"


@dataclass(frozen=True)
class SlotCheck:
    manifest_digest: bytes
    healthy: bool


def verify_slot(board: Board, slot: Slot, image: ImageRecord, keys: list[TrustedKey],
                device: DeviceInfo, floor: int) -> SlotCheck:
    """Authenticate the slot's stored header with `keys` (the recorded signer's key, see
    SecureState.signer_keys), check it describes the recorded image (sequence, digest, size,
    vendor, class, not below the floor), then hash the slot's bytes against the signed
    digest. Raises on any mismatch."""
    if not keys:
        raise UnknownKeyError(f"slot {slot.value}: its recorded signer is no longer an active "
                              "anchor")
    if image.components is not None:
        return _verify_set(board, slot, image, keys, device, floor)
    header = board.slots.header(slot)
    if header is None:
        raise DeviceStateError(f"slot {slot.value} has no stored SFUI header")
    if image.size > board.slots.size:
        raise DeviceStateError(f"slot {slot.value}: recorded size exceeds the slot")
    stream = ChainStream(header, board.slots.read(slot, image.size))
    reader = EnvelopeReader(stream)
    verified = reader.authenticate(keys)
    info = verified.info
    check_identity(info, device.vendor_id, device.class_id, f"the image in slot {slot.value}")
    if info.sequence_number < floor:
        raise DowngradeError(f"slot {slot.value} holds sequence {info.sequence_number}, "
                             f"below the rollback floor {floor}")
    if (info.sequence_number != image.sequence or info.image_size != image.size
            or info.image_digest is None or info.image_digest.value != image.digest
            or not hmac.compare_digest(verified.signer.kid, image.signer)):
        raise AuthenticationError(f"slot {slot.value}: the signed manifest is not the one "
                                  "recorded for this slot")
    # raises PayloadDigestError after the last chunk; the slot holds the image, whatever
    # the payload's encryption or encoding in transit
    healthy = _healthy(reader.installed_image())
    return SlotCheck(manifest_digest(reader.manifest_bytes), healthy)


def _healthy(chunks: Iterator[bytes]) -> bool:
    """Read every chunk; False if the health-failure marker is anywhere in them."""
    healthy = True
    tail = b""
    for chunk in chunks:
        window = tail + chunk
        if HEALTH_FAIL_MARKER in window:
            healthy = False
        tail = window[-(len(HEALTH_FAIL_MARKER) - 1):]
    return healthy


def _verify_set(board: Board, slot: Slot, image: ImageRecord, keys: list[TrustedKey],
                device: DeviceInfo, floor: int) -> SlotCheck:
    """Every component of the set in `slot`, each against its own record (see
    _verify_component); the set's sequence not below the floor. The measured manifest is
    the set's: the one of the SFUI that installed it."""
    if image.sequence < floor:
        raise DowngradeError(f"slot {slot.value} holds sequence {image.sequence}, below the "
                             f"rollback floor {floor}")
    assert image.components is not None
    healthy, measured = True, b""
    for component in image.components:
        slots = board.components.get(component.name)
        if slots is None:
            raise DeviceStateError(f"the board has no component {component.name!r}")
        check = _verify_component(slots, slot, component, keys, device)
        healthy = healthy and check.healthy
        if component.sequence == image.sequence and not measured:
            measured = check.manifest_digest
    return SlotCheck(measured, healthy)


def _verify_component(slots: Slots, slot: Slot, component: ComponentRecord,
                      keys: list[TrustedKey], device: DeviceInfo) -> SlotCheck:
    """The component's stored header authenticates with its recorded signer, and its signed
    manifest lists the component with the recorded sequence, digest and size, for this
    vendor and class; the component's bytes hash to that digest."""
    where = f"component {component.name} in slot {slot.value}"
    header = slots.header(slot)
    if header is None:
        raise DeviceStateError(f"{where} has no stored SFUI header")
    if component.size > slots.size:
        raise DeviceStateError(f"{where}: recorded size exceeds the slot")
    reader = EnvelopeReader(ChainStream(header, iter(())))
    verified = reader.authenticate(keys)
    part = next((p for p in parts(verified.manifest) if p.name == component.name), None)
    if (part is None or verified.manifest.sequence_number != component.sequence
            or part.size != component.size or part.digest is None
            or part.digest.value != component.digest
            or not hmac.compare_digest(verified.signer.kid, component.signer)):
        raise AuthenticationError(f"{where}: the signed manifest is not the one recorded for "
                                  "it")
    check_identity(part, device.vendor_id, device.class_id, where)
    hasher = hashlib.sha256()
    healthy = _healthy(_hashed(slots.read(slot, component.size), hasher))
    if not hmac.compare_digest(hasher.digest(), component.digest):
        raise PayloadDigestError(f"{where} does not match its signed digest")
    return SlotCheck(manifest_digest(reader.manifest_bytes), healthy)


def _hashed(chunks: Iterator[bytes], hasher: hashlib._Hash) -> Iterator[bytes]:
    for chunk in chunks:
        hasher.update(chunk)
        yield chunk


def fused_agent_key(board: Board, slot: Slot) -> TrustedKey:
    """The key that signed the bundle in agent partition `slot`, once its SHA-256 matches the
    ROOT_KEY_HASH fuse (the only key the ROM trusts)."""
    fused = board.fuses.read(Fuse.ROOT_KEY_HASH)
    if fused is None:
        raise DeviceStateError("no root-key hash is fused: the board is not provisioned")
    spki = board.agent.signer_key(slot)
    if spki is None:
        raise DeviceStateError(f"agent partition {slot.value} holds no signer key")
    if not hmac.compare_digest(hashlib.sha256(spki).digest(), fused):
        raise AuthenticationError("the agent bundle's signer key does not match the root-key "
                                  "hash fused in OTP")
    try:
        key = serialization.load_der_public_key(spki)
    except (ValueError, UnsupportedAlgorithm):  # an unknown key type's OID
        raise AuthenticationError("the agent bundle's signer key is unreadable") from None
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise AuthenticationError("the agent bundle's signer key has an unsupported type")
    return TrustedKey(key)


def is_agent_bundle(info: ImageInfo) -> bool:
    return (info.vendor_id, info.class_id) == (AGENT_VENDOR, AGENT_CLASS)


def verify_agent_bundle(board: Board, slot: Slot,
                        bundle: BundleRecord) -> tuple[bytes, Iterator[bytes]]:
    """Authenticate the bundle in agent partition `slot` with the key whose hash is fused in
    OTP, as an agent bundle, and check it is the bundle secure storage recorded there
    (sequence, payload digest). Returns the payload digest and the payload's chunks: the
    iterator raises PayloadDigestError after the last chunk if the bytes do not match, so
    whoever uses them (the ROM writing the zipapp it will run, the agent re-measuring) must
    drain it."""
    key = fused_agent_key(board, slot)
    reader = EnvelopeReader(ChainStream(b"", board.agent.stream(slot)))
    verified = reader.authenticate([key])
    if not is_agent_bundle(verified.info):
        raise WrongClassError("the agent partition holds an image that is not an agent bundle")
    digest = verified.info.image_digest
    if digest is None:
        raise AuthenticationError("the agent bundle declares no image digest")
    if (verified.info.sequence_number, digest.value) != (bundle.sequence, bundle.digest):
        raise AuthenticationError(f"agent partition {slot.value} does not hold the bundle "
                                  "recorded for it")
    return digest.value, reader.payload()

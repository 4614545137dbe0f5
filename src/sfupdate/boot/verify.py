"""Verify a slot against its stored, signed SFUI header, and the sim's firmware health hook.

Health-check hook (the sim's stand-in for running the firmware): an image is healthy unless its
bytes contain HEALTH_FAIL_MARKER anywhere. Demo images carry the marker to show a revert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, Final, cast

from sfupdate.board.hal import Board, Slot
from sfupdate.board.records import DeviceInfo, ImageRecord
from sfupdate.board.slotio import ChainStream
from sfupdate.errors import (
    AuthenticationError,
    DeviceStateError,
    DowngradeError,
    WrongClassError,
    WrongVendorError,
)
from sfupdate.sfui import EnvelopeReader, TrustedKey, Verified, manifest_digest

HEALTH_FAIL_MARKER: Final = b"SFU-HEALTH:FAIL"


@dataclass(frozen=True)
class SlotCheck:
    verified: Verified
    manifest_digest: bytes
    healthy: bool


def verify_slot(board: Board, slot: Slot, image: ImageRecord, keys: Sequence[TrustedKey],
                device: DeviceInfo, floor: int) -> SlotCheck:
    """Authenticate the slot's stored header with `keys`, check it describes the image the
    boot record expects (sequence, digest, size, vendor, class, not below the floor), then
    hash the slot's bytes against the signed digest. Raises on any mismatch."""
    header = board.slots.header(slot)
    if header is None:
        raise DeviceStateError(f"slot {slot.value} has no stored SFUI header")
    if image.size > board.slots.size:
        raise DeviceStateError(f"slot {slot.value}: recorded size exceeds the slot")
    stream = ChainStream(header, board.slots.read(slot, image.size))
    reader = EnvelopeReader(cast(BinaryIO, stream))  # read(n) is all the reader uses
    verified = reader.authenticate(keys)
    info = verified.info
    if info.vendor_id != device.vendor_id:
        raise WrongVendorError(f"slot {slot.value} holds an image for another vendor")
    if info.class_id != device.class_id:
        raise WrongClassError(f"slot {slot.value} holds an image for another device class")
    if info.sequence_number < floor:
        raise DowngradeError(f"slot {slot.value} holds sequence {info.sequence_number}, "
                             f"below the rollback floor {floor}")
    if (info.sequence_number != image.sequence or info.image_size != image.size
            or info.image_digest is None or info.image_digest.value != image.digest):
        raise AuthenticationError(f"slot {slot.value}: the signed manifest is not the one "
                                  "boot control recorded for this slot")
    healthy = True
    tail = b""
    for chunk in reader.payload():  # raises PayloadDigestError after the last chunk
        window = tail + chunk
        if HEALTH_FAIL_MARKER in window:
            healthy = False
        tail = window[-(len(HEALTH_FAIL_MARKER) - 1):]
    return SlotCheck(verified, manifest_digest(reader.manifest_bytes), healthy)

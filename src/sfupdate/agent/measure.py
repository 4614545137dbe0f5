"""Re-measuring what runs: a slot against its stored signed header, the agent bundle against
its signed digest and the root-key hash in OTP, and the regions of an integrity policy.

Every function reads the board and returns a `Measurement` (ok / mismatch / absent with a
one-line detail) instead of raising: a mismatch is a finding to log and report, not a
failure of the agent. Reads are streamed; memory stays flat for any slot or file size.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, Final, cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from sfupdate.board.hal import Board, Fuse, Slot
from sfupdate.board.records import BootRecord, DeviceInfo, ImageRecord
from sfupdate.board.slotio import ChainStream
from sfupdate.errors import SfuError
from sfupdate.remote.policy import Region
from sfupdate.sfui import EnvelopeReader, TrustedKey, class_uuid, vendor_uuid

OK, MISMATCH, ABSENT = "ok", "mismatch", "absent"
#: The agent bundle's vendor and class (sfupdate.boot.bundle, which the agent may not import).
AGENT_VENDOR: Final = vendor_uuid("sfupdate.dev")
AGENT_CLASS: Final = class_uuid(AGENT_VENDOR, "sfu-agent")
_CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class Measurement:
    result: str  # OK, MISMATCH or ABSENT
    detail: str

    @property
    def ok(self) -> bool:
        return self.result == OK


def measure_slot(board: Board, slot: Slot, image: ImageRecord, keys: Sequence[TrustedKey],
                 device: DeviceInfo, floor: int) -> Measurement:
    """The slot's stored SFUI header must authenticate with `keys` and describe exactly the
    image boot control recorded (sequence, size, digest, vendor, class, at or above the
    floor), and the slot's bytes must hash to the signed digest."""
    where = f"slot {slot.value} (sequence {image.sequence})"
    header = board.slots.header(slot)
    if header is None:
        return Measurement(ABSENT, f"{where}: no stored SFUI header")
    if image.size > board.slots.size:
        return Measurement(MISMATCH, f"{where}: recorded size exceeds the slot")
    try:
        stream = ChainStream(header, board.slots.read(slot, image.size))
        reader = EnvelopeReader(cast(BinaryIO, stream))  # read(n) is all it uses
        info = reader.authenticate(keys).info
        if (info.vendor_id, info.class_id) != (device.vendor_id, device.class_id):
            return Measurement(MISMATCH, f"{where}: signed for another vendor or class")
        if info.sequence_number < floor:
            return Measurement(MISMATCH, f"{where}: below the rollback floor {floor}")
        if (info.sequence_number != image.sequence or info.image_size != image.size
                or info.image_digest is None or info.image_digest.value != image.digest):
            return Measurement(MISMATCH, f"{where}: the signed manifest is not the one boot "
                                         "control recorded")
        for _ in reader.payload():  # PayloadDigestError after the last chunk if altered
            pass
    except SfuError as exc:
        return Measurement(MISMATCH, f"{where}: {exc}")
    return Measurement(OK, f"{where}: matches its signed digest {image.digest.hex()[:16]}")


def slot_signer(board: Board, slot: Slot, keys: Sequence[TrustedKey]) -> bytes | None:
    """The key ID among `keys` whose signature the slot's stored header carries, or None
    (no header, or no key of `keys` signed it). Reads the header only, not the image."""
    header = board.slots.header(slot)
    if header is None:
        return None
    try:
        return EnvelopeReader(io.BytesIO(header)).authenticate(keys).signer.kid
    except SfuError:
        return None


def measure_agent(board: Board, measured_at_boot: bytes | None) -> Measurement:
    """The agent bundle at rest: its signer key hashes to the ROOT_KEY_HASH fuse, it
    authenticates with that key as an agent bundle, its payload hashes to the signed digest,
    and (if the boot log has one) that digest is the one the boot ROM measured."""
    fused = board.fuses.read(Fuse.ROOT_KEY_HASH)
    spki = board.agent.signer_key()
    if fused is None or spki is None:
        return Measurement(ABSENT, "agent bundle: no fused root-key hash or no signer key")
    if not hmac.compare_digest(hashlib.sha256(spki).digest(), fused):
        return Measurement(MISMATCH, "agent bundle: signer key does not match the OTP hash")
    try:
        key = serialization.load_der_public_key(spki)
        if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
            return Measurement(MISMATCH, "agent bundle: signer key of an unsupported type")
        reader = EnvelopeReader(cast(BinaryIO, ChainStream(b"", board.agent.stream())))
        info = reader.authenticate([TrustedKey(key)]).info
        if (info.vendor_id, info.class_id) != (AGENT_VENDOR, AGENT_CLASS):
            return Measurement(MISMATCH, "agent bundle: not of the agent class")
        for _ in reader.payload():
            pass
    except (SfuError, ValueError) as exc:
        return Measurement(MISMATCH, f"agent bundle: {exc}")
    assert info.image_digest is not None  # payload() checked it
    digest = info.image_digest.value
    if measured_at_boot is not None and measured_at_boot != digest:
        return Measurement(MISMATCH, "agent bundle: not the bundle the boot ROM measured")
    return Measurement(OK, f"agent bundle: matches its signed digest {digest.hex()[:16]}")


def measure_region(board: Board, record: BootRecord, running: Slot,
                   region: Region) -> Measurement:
    """A policy region: a regular file, or a byte range of a slot, against its SHA-256."""
    where = f"region {region.name}"
    if region.path is not None:
        digest = _file_digest(region.path)
        if isinstance(digest, str):
            return Measurement(ABSENT if digest == "absent" else MISMATCH,
                               f"{where}: {region.path} {digest}")
        what = region.path
    else:
        hasher = hashlib.sha256()
        slot = running if region.slot == "running" else Slot(region.slot)
        end = region.offset + region.length
        if end > board.slots.size:
            return Measurement(MISMATCH, f"{where}: range ends beyond the {board.slots.size}-"
                                         f"byte slot")
        skip = region.offset
        try:
            for chunk in board.slots.read(slot, end):
                hasher.update(chunk[skip:])
                skip = max(0, skip - len(chunk))
        except SfuError as exc:
            return Measurement(MISMATCH, f"{where}: {exc}")
        what = f"slot {slot.value} bytes {region.offset}..{end}"
        digest = hasher.digest()
    if not hmac.compare_digest(digest, region.sha256):
        return Measurement(MISMATCH, f"{where}: {what} does not match its expected digest")
    return Measurement(OK, f"{where}: {what} matches")


def _file_digest(path: str) -> bytes | str:
    """The SHA-256 of a regular file, or why there is none ("absent", "is not a regular
    file", "is unreadable"). O_NONBLOCK: a FIFO named by a policy must not hang the agent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return "absent"
    except OSError as exc:
        return f"is unreadable ({exc.strerror})"
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "is not a regular file"
        hasher = hashlib.sha256()
        try:
            while chunk := f.read(_CHUNK):
                hasher.update(chunk)
        except OSError as exc:
            return f"is unreadable ({exc.strerror})"
    return hasher.digest()

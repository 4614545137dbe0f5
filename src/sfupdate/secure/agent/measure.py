"""Re-measuring what runs: a slot against the facts secure storage recorded for it, the agent
bundle against its signed digest and the root-key hash in OTP (both verified by
sfupdate.secure.kernel.verify, shared with the boot code), and the regions of an integrity policy.

Every function reads the board and returns a `Measurement` (ok / mismatch / absent with a
one-line detail) instead of raising: a mismatch is a finding to log and report, not a
failure of the agent. Reads are streamed; memory stays flat for any slot or file size.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from dataclasses import dataclass
from typing import Final

from sfupdate.errors import SfuError
from sfupdate.formats.remote.policy import Region
from sfupdate.secure.board.hal import Board, Slot
from sfupdate.secure.kernel import SecureState
from sfupdate.secure.kernel.verify import verify_agent_bundle, verify_slot

OK, MISMATCH, ABSENT = "ok", "mismatch", "absent"
_CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class Measurement:
    result: str  # OK, MISMATCH or ABSENT
    detail: str

    @property
    def ok(self) -> bool:
        return self.result == OK


def measure_slot(board: Board, slot: Slot, state: SecureState) -> Measurement:
    """The slot against the facts secure storage recorded for it (kernel.verify.verify_slot:
    its header verifies with the recorded signer and describes the recorded image, and its
    bytes hash to the signed digest)."""
    image = state.boot.slot(slot).image
    if image is None:
        return Measurement(ABSENT, f"slot {slot.value}: no image recorded")
    where = f"slot {slot.value} (sequence {image.sequence})"
    try:
        verify_slot(board, slot, image, state.signer_keys(image), state.device,
                    state.boot.floor)
    except SfuError as exc:
        return Measurement(ABSENT if board.slots.header(slot) is None else MISMATCH,
                           f"{where}: {exc}")
    return Measurement(OK, f"{where}: matches its signed digest {image.digest.hex()[:16]}")


def confirmed_failure(board: Board, state: SecureState) -> str | None:
    """None if the confirmed slot verifies now, else why not (the revert rule needs it)."""
    found = measure_slot(board, state.boot.confirmed, state)
    return None if found.ok else found.detail


def measure_agent(board: Board, state: SecureState) -> Measurement:
    """The confirmed agent bundle at rest: its signer key hashes to the ROOT_KEY_HASH fuse, it
    authenticates with that key as an agent bundle, it is the bundle recorded for its
    partition, its payload hashes to the signed digest, and (if the boot measured one) that
    digest is the one the boot ROM measured."""
    agent = state.agent
    at_boot = state.measured.digests("agent")
    measured_at_boot = at_boot[-1] if at_boot else None
    try:
        digest, chunks = verify_agent_bundle(board, agent.active, agent.active_bundle)
        for _ in chunks:  # PayloadDigestError after the last chunk if altered
            pass
    except SfuError as exc:
        return Measurement(MISMATCH, f"agent bundle: {exc}")
    if measured_at_boot is not None and measured_at_boot != digest:
        return Measurement(MISMATCH, "agent bundle: not the bundle the boot ROM measured")
    return Measurement(OK, f"agent bundle: matches its signed digest {digest.hex()[:16]}")


def measure_region(board: Board, running: Slot, region: Region) -> Measurement:
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
        slots = board.components.get(region.component) if region.component else board.slots
        if slots is None:
            return Measurement(ABSENT, f"{where}: this board has no component "
                                       f"{region.component}")
        end = region.offset + region.length
        if end > slots.size:
            return Measurement(MISMATCH, f"{where}: range ends beyond the {slots.size}-"
                                         f"byte slot")
        skip = region.offset
        try:
            for chunk in slots.read(slot, end):
                hasher.update(chunk[skip:])
                skip = max(0, skip - len(chunk))
        except SfuError as exc:
            return Measurement(MISMATCH, f"{where}: {exc}")
        of = f"component {region.component} " if region.component else ""
        what = f"{of}slot {slot.value} bytes {region.offset}..{end}"
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

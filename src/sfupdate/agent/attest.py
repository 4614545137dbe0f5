"""Attestation: an RFC 9711 EAT over the device's state, signed with its identity key."""

from __future__ import annotations

from collections.abc import Sequence

from sfupdate.agent.device import Device, device_info, remote_state, running_slot
from sfupdate.agent.identity import load_identity
from sfupdate.board.hal import Board, Slot
from sfupdate.errors import StorageIntegrityError, UsageError
from sfupdate.remote import AttestationClaims, IntegrityResult, SlotClaim, sign_token
from sfupdate.remote.eat import MAX_NONCE, MIN_NONCE


def boot_measurements(board: Board) -> list[tuple[str, bytes]]:
    """(stage, digest) of each event of the measured boot log, in order."""
    out = []
    for event in board.boot_log.events():
        try:
            stage, digest = str(event["stage"]), bytes.fromhex(str(event["digest"]))
        except (KeyError, TypeError, ValueError):
            raise StorageIntegrityError("the measured boot log is malformed") from None
        if len(digest) != 32:
            raise StorageIntegrityError("the measured boot log is malformed")
        out.append((stage, digest))
    return out


def attest(device: Device, nonce: bytes, integrity: Sequence[IntegrityResult],
           now: int) -> bytes:
    """A token answering `nonce`: identity, class, slots, running slot, trial, floor, boot
    log, the latest integrity results, quarantine and the last remote command number."""
    if not MIN_NONCE <= len(nonce) <= MAX_NONCE:
        raise UsageError(f"an attestation nonce has {MIN_NONCE} to {MAX_NONCE} bytes")
    with device.transaction() as control:
        storage = device.board.storage
        record, info = control.record, device_info(storage)
        signer, remote = load_identity(storage), remote_state(storage)
    slots = []
    for slot in Slot:
        entry = record.slot(slot)
        image = entry.image
        slots.append(SlotClaim(slot.value, entry.status.value,
                               image.sequence if image else None,
                               image.digest if image else None))
    claims = AttestationClaims(
        nonce=nonce, ueid=signer.ueid, vendor_id=info.vendor_id, class_id=info.class_id,
        slots=tuple(slots), running_slot=running_slot(record).value,
        trial_slot=record.trial.value if record.trial else None,
        rollback_floor=record.floor,
        boot_log=tuple(digest for _, digest in boot_measurements(device.board)),
        integrity=tuple(integrity), issued_at=now, quarantine=remote.quarantine,
        last_command=remote.last_command)
    return sign_token(claims, signer)

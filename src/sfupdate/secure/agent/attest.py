"""Attestation: an RFC 9711 EAT over the device's secure state, signed with its identity key.

Everything in a token comes from one snapshot of secure storage (the kernel's state): slots,
floor, quarantine, the last command number, and the measured boot as the boot code recorded
it. A token answering a remote command also carries the answer claim (the command's number,
action and outcome), which `attest` requests can never produce.
"""

from __future__ import annotations

from collections.abc import Sequence

from sfupdate.errors import UsageError
from sfupdate.formats.remote import AttestationClaims, IntegrityResult, SlotClaim, sign_token
from sfupdate.formats.remote.eat import MAX_NONCE, MIN_NONCE, CommandAnswer
from sfupdate.secure.agent.device import Device
from sfupdate.secure.agent.identity import IdentitySigner
from sfupdate.secure.board.hal import Slot


def attest(device: Device, nonce: bytes, integrity: Sequence[IntegrityResult], now: int,
           answer: CommandAnswer | None = None) -> bytes:
    """A token answering `nonce` (and, for a remote command's answer, `answer`)."""
    if not MIN_NONCE <= len(nonce) <= MAX_NONCE:
        raise UsageError(f"an attestation nonce has {MIN_NONCE} to {MAX_NONCE} bytes")
    state = device.kernel.state()
    signer = IdentitySigner(device.kernel.identity_key())
    boot = state.boot
    slots = []
    for slot in Slot:
        image = boot.slot(slot).image
        slots.append(SlotClaim(slot.value, boot.slot(slot).status.value,
                               image.sequence if image else None,
                               image.digest if image else None))
    claims = AttestationClaims(
        nonce=nonce, ueid=signer.ueid, vendor_id=state.device.vendor_id,
        class_id=state.device.class_id, slots=tuple(slots), running_slot=boot.running.value,
        trial_slot=boot.trial.value if boot.trial else None, rollback_floor=boot.floor,
        boot_log=tuple(e.digest for e in state.measured.events),
        integrity=tuple(integrity), issued_at=state.clock(now),
        quarantine=state.remote.quarantine, last_command=state.remote.last_command,
        answer=answer)
    return sign_token(claims, signer)

"""The install pipeline, in the order the security argument needs:

1. read the envelope's small members and authenticate the manifest with the keys the secure
   state accepts for an install (the firmware anchors; only the named recovery anchor while
   the device is quarantined) — before a byte is written;
2. policy: vendor and class, signer, anti-rollback (above the running image, the confirmed
   image and the floor: `SecureState.check_install`), size, and the envelope's payload length
   equal to the signed size;
3. the kernel marks the install slot invalid (never the running nor the confirmed slot),
   then the payload is streamed into it while hashed (an encrypted payload is decrypted on
   the way, its key unwrapped before this step: secure/agent/decryption.py);
4. only after a complete payload with a matching digest, the kernel records the slot as a
   trial together with the facts of its authentication (signer key ID, vendor, class,
   sequence, digest, size), re-checking them against the state of that moment.

On a board of several components the slot is a side holding one image of each: step 3
streams every component the SFUI names into its own slot of that side and copies each other
one from the confirmed side (secure/board/components.py), and step 4 records the whole set in
the one write; a failure anywhere before it leaves the side invalid and nothing recorded.

A failure before step 3 changes nothing; a failure in step 3 leaves the slot invalid and
everything else as it was.

An SFUI of the agent bundle's class, signed by the key whose hash is fused in OTP, takes the
same path into the inactive agent partition instead, against the agent's own floor; the ROM
runs it once on trial and it confirms itself (docs/board.md, "Updating the agent").
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass

from sfupdate.errors import (
    MissingMemberError,
    QuarantinedError,
    SfuError,
    UnknownKeyError,
    UnsupportedError,
)
from sfupdate.formats.sfui import EnvelopeReader, TrustedKey, Verified
from sfupdate.formats.sfui.cbor import Readable
from sfupdate.secure.agent import decryption, envelope_checks
from sfupdate.secure.agent.delta_base import delta_base
from sfupdate.secure.agent.device import Device
from sfupdate.secure.board.components import keep, plan_install
from sfupdate.secure.board.hal import Slot, SlotWriter
from sfupdate.secure.board.records import BundleRecord
from sfupdate.secure.board.slotio import HeaderRecorder
from sfupdate.secure.kernel import SecureState
from sfupdate.secure.kernel.state import shown
from sfupdate.secure.kernel.verify import fused_agent_key, is_agent_bundle


@dataclass(frozen=True)
class Installed:
    """What an install recorded as a trial: a firmware image in a slot, or a new agent bundle
    in an agent partition."""

    component: str  # "firmware" or "agent"
    slot: Slot
    sequence: int
    digest: bytes


def install(device: Device, stream: Readable) -> Installed:
    """Install the SFUI read from `stream` as a trial: a firmware image into the install
    slot, or an agent bundle (signed by the key the ROM trusts) into the inactive agent
    partition."""
    recorder = HeaderRecorder(stream)
    reader = EnvelopeReader(recorder)
    state = device.kernel.state()
    agent_key = _agent_key(device, state)
    keys = state.install_keys() + ([agent_key] if agent_key is not None else [])
    try:
        verified = reader.authenticate(keys)
    except UnknownKeyError:
        quarantine = state.remote.quarantine
        if quarantine is None:
            raise
        raise QuarantinedError(f"the device is quarantined: only images signed by recovery "
                               f"key {shown(quarantine)} are accepted until released"
                               ) from None
    if is_agent_bundle(verified.info):
        if agent_key is None or not hmac.compare_digest(verified.signer.kid, agent_key.kid):
            raise UnknownKeyError("an agent bundle must be signed by the key whose hash is "
                                  "fused in OTP")
        return _install_agent(device, state, reader, recorder, verified)
    info = verified.info
    envelope_checks.check_identity(info, state.device.vendor_id, state.device.class_id)
    cipher = decryption.payload_cipher(device, verified)  # before the slot is touched
    signers = [key.kid for key in verified.signers]
    plan = plan_install(verified, device.board, state.device, state.boot.confirmed_image,
                        state.check_signers(signers))
    image = plan.image
    state.check_install(image)  # the signer too: the ROM key alone signs no firmware
    state.install_slot()  # refuse before the header is taken if no slot may be written
    base = delta_base(device.board, state, verified)  # a delta's base: the confirmed slot
    header = recorder.header()

    slot = device.kernel.begin_install()
    with base as base_image:  # each named component, as it arrives
        for part, chunks in reader.payloads(cipher=cipher, base=base_image):
            with plan.named[part.name].writer(slot, header) as writer:
                _stream_payload(chunks, writer)
                writer.finish()
    for kept in plan.kept:  # the others keep their image: copied from the confirmed side
        keep(device.board, kept, state.boot.confirmed, slot)
    device.kernel.record_trial(slot, image, signers)  # one write records the whole set
    return Installed("firmware", slot, image.sequence, image.digest)


def _install_agent(device: Device, state: SecureState, reader: EnvelopeReader,
                   recorder: HeaderRecorder, verified: Verified) -> Installed:
    """A new agent bundle: into the inactive agent partition, whole (header and payload, as
    the ROM reads it), then recorded as the agent's trial; the ROM runs it once."""
    info = verified.info
    if verified.encryption is not None:
        raise UnsupportedError("an agent bundle cannot be encrypted: the boot ROM that "
                               "verifies it holds no decryption key")
    if verified.encoding is not None:  # the ROM reads the partition as the envelope it was
        raise UnsupportedError("an agent bundle's payload is never compressed nor a delta")
    envelope_checks.check_payload(info, verified.payload)
    if info.image_digest is None:
        raise MissingMemberError("manifest declares no image-digest")
    bundle = BundleRecord(info.sequence_number, info.image_digest.value)
    state.check_agent_install(bundle)
    spki = device.board.agent.signer_key(state.agent.active)
    assert spki is not None  # _agent_key() read and checked it
    header = recorder.header()

    slot = device.kernel.begin_agent_install()
    with device.board.agent.writer(slot, spki) as writer:
        writer.write(header)
        _stream_payload(reader.payload(), writer)
        writer.finish()
    device.kernel.record_agent_trial(slot, bundle)
    return Installed("agent", slot, bundle.sequence, bundle.digest)


def _agent_key(device: Device, state: SecureState) -> TrustedKey | None:
    """The key the ROM trusts (from the confirmed agent partition, checked against OTP), or
    None if that partition's key does not check out (then no agent update is accepted)."""
    try:
        return fused_agent_key(device.board, state.agent.active)
    except SfuError:
        return None


def _stream_payload(chunks: Iterator[bytes], writer: SlotWriter) -> None:
    for chunk in chunks:
        writer.write(chunk)

"""The install pipeline, in the order the security argument needs:

1. read the envelope's small members and authenticate the manifest with the keys the secure
   state accepts for an install (the firmware anchors; only the named recovery anchor while
   the device is quarantined) — before a byte is written;
2. policy: vendor and class, signer, anti-rollback (above the running image, the confirmed
   image and the floor: `SecureState.check_install`), size, and the envelope's payload length
   equal to the signed size;
3. the kernel marks the install slot invalid (never the running nor the confirmed slot),
   then the payload is streamed into it while hashed (the writes run behind the reading and
   hashing, in order: agent/write_behind.py);
4. only after a complete payload with a matching digest, the kernel records the slot as a
   trial together with the facts of its authentication (signer key ID, vendor, class,
   sequence, digest, size), re-checking them against the state of that moment.

A failure before step 3 changes nothing; a failure in step 3 leaves the slot invalid and
everything else as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

from sfupdate.agent import envelope_checks
from sfupdate.agent.device import Device
from sfupdate.agent.write_behind import WriteBehind
from sfupdate.board.hal import Slot
from sfupdate.board.records import ImageRecord
from sfupdate.board.slotio import HeaderRecorder
from sfupdate.errors import MissingMemberError, QuarantinedError, UnknownKeyError
from sfupdate.kernel.state import shown
from sfupdate.sfui import EnvelopeReader, Verified
from sfupdate.sfui.cbor import Readable


@dataclass(frozen=True)
class Installed:
    slot: Slot
    image: ImageRecord


def install(device: Device, stream: Readable) -> Installed:
    """Install the SFUI read from `stream` into the install slot as a trial."""
    recorder = HeaderRecorder(stream)
    reader = EnvelopeReader(recorder)
    state = device.kernel.state()
    try:
        verified = reader.authenticate(state.install_keys())
    except UnknownKeyError:
        quarantine = state.remote.quarantine
        if quarantine is None:
            raise
        raise QuarantinedError(f"the device is quarantined: only images signed by recovery "
                               f"key {shown(quarantine)} are accepted until released"
                               ) from None
    info = verified.info
    envelope_checks.check_identity(info, state.device.vendor_id, state.device.class_id)
    size = envelope_checks.check_size(info, device.board.slots.size)
    envelope_checks.check_payload(info, verified.payload)
    if info.image_digest is None:
        raise MissingMemberError("manifest declares no image-digest")
    assert info.vendor_id is not None and info.class_id is not None  # check_identity
    image = ImageRecord(info.sequence_number, info.image_digest.value, size,
                        verified.signer.kid, info.vendor_id, info.class_id,
                        _version_text(verified))
    state.check_install(image)
    state.install_slot()  # refuse before the header is taken if no slot may be written
    header = recorder.header()

    slot = device.kernel.begin_install()
    with device.board.slots.writer(slot, header) as writer:
        behind = WriteBehind(writer)
        try:
            for chunk in reader.payload():
                behind.write(chunk)
        except BaseException:
            behind.stop()
            raise
        behind.close()
        writer.finish()
    device.kernel.record_trial(slot, image)
    return Installed(slot, image)


def _version_text(verified: Verified) -> str | None:
    return verified.text.component_version() if verified.text is not None else None

"""The install pipeline, in the order the security argument needs:

1. read the envelope's small members and authenticate the manifest with the stored
   firmware trust anchors (only the named recovery anchor while the device is quarantined)
   — before a byte is written;
2. policy: vendor and class, anti-rollback (above the running image and the floor), size,
   and the envelope's payload length equal to the signed size;
3. mark the inactive slot invalid, then stream the payload into it while hashing;
4. only after a complete payload with a matching digest, fsync and record the slot as a
   trial with N tries.

A failure before step 3 changes nothing; a failure in step 3 leaves the slot invalid and
everything else as it was (boot control changes only in `begin_install` and `record_trial`).
"""

from __future__ import annotations

from typing import BinaryIO, cast

from sfupdate.agent import policy
from sfupdate.agent.device import Device, running_sequence
from sfupdate.board.records import ImageRecord
from sfupdate.board.slotio import HeaderRecorder
from sfupdate.errors import MissingMemberError, QuarantinedError, UnknownKeyError
from sfupdate.ipc.messages import InstallResult
from sfupdate.sfui import EnvelopeReader, Verified


def install(device: Device, stream: BinaryIO) -> InstallResult:
    """Install the SFUI read from `stream` into the inactive slot as a trial."""
    recorder = HeaderRecorder(stream)
    reader = EnvelopeReader(cast(BinaryIO, recorder))  # it only needs .read(n)
    keys, quarantine = device.install_keys()
    try:
        verified = reader.authenticate(keys)
    except UnknownKeyError:
        if quarantine is None:
            raise
        raise QuarantinedError(f"the device is quarantined: only images signed by recovery "
                               f"key {quarantine.hex()[:16]} are accepted until released"
                               ) from None
    info = verified.info
    identity = device.info()
    policy.check_identity(info, identity.vendor_id, identity.class_id)
    record = device.boot_record()
    policy.check_sequence(info.sequence_number, running_sequence(record), record.floor)
    size = policy.check_size(info, device.board.slots.size)
    policy.check_payload(info, verified.payload)
    if info.image_digest is None:
        raise MissingMemberError("manifest declares no image-digest")
    header = recorder.header()

    slot = device.begin_install()
    with device.board.slots.writer(slot, header) as writer:
        for chunk in reader.payload():
            writer.write(chunk)
        writer.finish()
    image = ImageRecord(info.sequence_number, info.image_digest.value, size,
                        _version_text(verified))
    device.record_trial(slot, image)
    return InstallResult(slot.value, image.sequence, image.digest.hex())


def _version_text(verified: Verified) -> str | None:
    return verified.text.component_version() if verified.text is not None else None

"""Attack: a truncated image. The attacker cuts the image short — inside the envelope, before
the signature could be checked, or inside the payload, after the agent started writing — and
ends the session cleanly, as if that were the whole file. Cut before the payload, nothing
changes; cut inside it, the slot is left invalid and never becomes bootable.
"""

from __future__ import annotations

import pytest

from sfupdate.errors import PayloadTooShortError, TruncatedError
from tests.device_world import DeviceWorld, firmware, payload_offset


def test_image_cut_inside_the_envelope_is_refused_and_changes_nothing(
        world: DeviceWorld) -> None:
    image = world.image(2)
    prefix = payload_offset(image, firmware(2))
    with world.unchanged():
        for length in (1, 2, 10, prefix // 2, prefix - 1):
            with pytest.raises(TruncatedError):
                world.install(image[:length])


def test_image_cut_inside_the_payload_never_becomes_bootable(world: DeviceWorld) -> None:
    image = world.image(2)
    before = world.snapshot()
    for cut in (1, 4096, 10_000, len(firmware(2))):  # the last: no payload byte at all
        with pytest.raises(PayloadTooShortError):
            world.install(image[:len(image) - cut])
        status = world.client().status()
        assert status.slots["B"].state == "invalid" and status.trial_slot is None
    after = world.snapshot()
    for name in ("slots/A.img", "slots/A.hdr"):
        assert after["files"][name] == before["files"][name]
    assert "slots/B.hdr" not in after["files"]
    assert (after["status"]["running_sequence"], after["status"]["rollback_floor"]) == (1, 1)
    assert world.boot().slot == "A"
    assert world.install(image).sequence == 2  # the whole image, afterwards, installs

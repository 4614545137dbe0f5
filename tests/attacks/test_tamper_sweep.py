"""Tamper sweep: every byte of the envelope, and the payload every 4 KiB, flipped in turn.

For a small SFUI (64 KiB payload) the attacker makes two copies per byte of the envelope
prefix (everything before the payload: tag, members, authentication wrapper, manifest, the
payload's own byte-string head; lowest bit, then highest bit flipped) and one copy per 4 KiB
of payload, each with one bit flipped, and
tries to install every copy through the real agent process. Every copy is refused; the slot
is never marked bootable; the device state is unchanged after each one: a prefix copy is
refused before a byte is written, a payload copy leaves only the bytes of the already-invalid
install slot behind.
"""

from __future__ import annotations

import collections
import hashlib
import time

import pytest

from sfupdate.errors import PayloadTooShortError, SfuError
from sfupdate.secure.board.hal import Slot
from tests.device_world import DeviceWorld, flip, payload_offset

PAYLOAD = bytes(i * 7 % 251 for i in range(64 * 1024))
STRIDE = 4096


def _state(world: DeviceWorld) -> dict[str, object]:
    """Device state apart from the bytes of slot B (which stays invalid throughout)."""
    snap = world.snapshot()
    del snap["files"]["slots/B.img"]
    return snap


def test_every_flipped_copy_is_refused_and_changes_nothing(
        world: DeviceWorld, capsys: pytest.CaptureFixture[str]) -> None:
    image = world.image(2, PAYLOAD)
    prefix = payload_offset(image, PAYLOAD)
    # Start from an install slot that is already invalid (an earlier install was cut short):
    # then a refused payload copy does not even write secure storage.
    with pytest.raises(PayloadTooShortError):
        world.install(image[:-1], chunk=len(image))
    before = _state(world)
    assert before["status"]["slots"]["B"]["state"] == "invalid"  # type: ignore[index]
    slot_b = hashlib.sha256(world.slot_bytes(Slot.B)).digest()

    # Each prefix byte twice (lowest and highest bit: a CBOR head changes its value or its
    # major type), the payload once per 4 KiB.
    copies = [(offset, mask) for offset in range(prefix) for mask in (0x01, 0x80)]
    copies += [(offset, 0x01) for offset in range(prefix, len(image), STRIDE)]
    refusals: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    for offset, mask in copies:
        with pytest.raises(SfuError) as refused:
            world.install(flip(image, offset, mask), chunk=len(image))
        refusals[type(refused.value).__name__] += 1
        assert _state(world) == before, f"state changed by the copy flipped at {offset}"
        if offset < prefix:  # refused before the slot was touched
            assert hashlib.sha256(world.slot_bytes(Slot.B)).digest() == slot_b, offset
    elapsed = time.monotonic() - started

    assert sum(refusals.values()) == len(copies) == 2 * prefix + len(PAYLOAD) // STRIDE
    assert world.install(image, chunk=len(image)).sequence == 2  # the genuine one installs
    with capsys.disabled():
        print(f"\n[tamper-sweep] {len(copies)} flipped copies ({prefix} envelope-prefix bytes "
              f"x 2 bits, {len(PAYLOAD) // STRIDE} payload bytes at a {STRIDE}-byte stride) "
              "installed "
              f"through the agent in {elapsed:.1f} s, all refused: {dict(refusals)}")

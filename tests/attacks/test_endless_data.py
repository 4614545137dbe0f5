"""Attack: endless data. The attacker sends more bytes than the signed manifest declares —
hoping the agent writes past the image, past the slot, or keeps reading forever. The agent
reads exactly the declared image, refuses the first byte too many, and never marks the slot
bootable. (The same attack on the network side, a server that never stops sending, is
tests/delivery/test_network_attacks.py::test_endless_data_is_cut_off_at_the_declared_size.)
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from sfupdate.errors import EncodingError, IpcError, PayloadTooLongError
from sfupdate.secure.board.hal import Slot
from tests.device_world import DeviceWorld, envelope, firmware, manifest


def test_payload_longer_than_the_signed_size_is_refused_before_a_byte_is_written(
        world: DeviceWorld) -> None:
    """The manifest (signed) says 24000 bytes; the envelope's payload says, and carries, one
    more megabyte."""
    body = firmware(2)
    longer = body + b"\x00" * (1 << 20)
    image = envelope(manifest(2, body), longer, world.author)
    with world.unchanged(), pytest.raises(PayloadTooLongError):
        world.install(image)


def test_bytes_after_a_complete_image_are_refused(world: DeviceWorld) -> None:
    """A genuine image with garbage appended: the agent has already written the payload when
    it sees the extra byte, so the slot is left invalid — never a trial."""
    before = world.snapshot()
    with pytest.raises(EncodingError, match="trailing"):
        world.install(world.image(2) + b"\x00" * 4096)
    after = world.snapshot()
    assert after["status"]["slots"]["B"]["state"] == "invalid"
    assert after["status"]["trial_slot"] is None
    before["status"]["slots"]["B"] = after["status"]["slots"]["B"]
    assert after["status"] == before["status"]
    assert "slots/B.hdr" not in after["files"]  # no header: the boot cannot even try slot B
    assert world.boot().slot == "A"


def test_endless_stream_is_cut_off_after_the_declared_image(world: DeviceWorld) -> None:
    """No size announced and a stream that never ends: the agent stops reading one byte past
    the image and refuses; the client stops sending; bounded in bytes and in time."""
    image = world.image(2)
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        for chunk in itertools.chain((image[i:i + 4096] for i in range(0, len(image), 4096)),
                                     itertools.repeat(b"\xee" * 65536)):
            sent += len(chunk)
            yield chunk

    started = time.monotonic()
    with pytest.raises((EncodingError, IpcError)):
        world.client().install(endless(), size=None)
    assert time.monotonic() - started < 10
    assert sent < len(image) + (64 << 20)  # the socket buffers, not the agent, hold the rest
    assert world.client().status().slots["B"].state == "invalid"
    assert len(world.slot_bytes(Slot.B)) == len(world.slot_bytes(Slot.A))  # nothing past the slot


def test_more_bytes_than_the_client_announced_are_refused(world: DeviceWorld) -> None:
    image = world.image(2)
    with world.unchanged(), pytest.raises(IpcError, match="announced"):
        world.install(image + b"\x00" * 100, size=200)

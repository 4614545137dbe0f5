"""Attack: malicious client messages on the IPC. The socket is the attacker's: the whole
Rich OS is. The full catalogue of crafted and random traffic (oversized, truncated and
stalled frames, non-CBOR, wrong types, unknown ops, out-of-order and intruding messages,
abandoned sessions, 150 seeded random messages) is tests/agent/test_agent_hostile.py; this
story adds the attacks that aim at the middle of an authenticated install, where the agent
has already started writing: a non-canonical chunk, an oversized chunk, an empty chunk, a
frame that lies about its length. Each one ends the session; the slot is left invalid, never
bootable; and the next honest client is served.
"""

from __future__ import annotations

import contextlib
import socket
import struct

import pytest

from sfupdate.errors import DeviceStateError
from sfupdate.formats.ipc.framing import MAX_CHUNK, MAX_FRAME, Connection
from sfupdate.formats.ipc.messages import ErrorReply, ReadyReply, decode_reply
from sfupdate.formats.sfui import cbor
from tests.device_world import DeviceWorld, firmware, payload_offset


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def _chunk(data: bytes) -> bytes:
    return _frame(cbor.dumps({"op": "chunk", "data": data}))


_PREFIX = cbor.dumps({"op": "chunk", "data": b""})[:-1]
MID_SESSION_ATTACKS = {
    "non-minimal-length-head": _frame(_PREFIX + b"\x59\x00\x05" + b"hello"),
    "chunk-over-the-chunk-cap": _chunk(b"\x00" * (MAX_CHUNK + 1)),
    "empty-chunk": _chunk(b""),
    "frame-longer-than-its-cbor": _frame(cbor.dumps({"op": "chunk", "data": b"ab"}) + b"c"),
    "frame-over-the-cap": struct.pack(">I", MAX_FRAME + 1),
    "chunk-with-an-extra-key": _frame(cbor.dumps({"op": "chunk", "data": b"x", "slot": "A"})),
    "status-map-as-request": _frame(cbor.dumps({"reply": "ready"})),
}


@pytest.mark.parametrize("attack", MID_SESSION_ATTACKS, ids=list(MID_SESSION_ATTACKS))
def test_malformed_message_in_the_middle_of_an_install_ends_it_harmlessly(
        world: DeviceWorld, attack: str) -> None:
    image = world.image(2)
    half = payload_offset(image, firmware(2)) + 8192  # authenticated, writing the payload
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(world.running.socket))
        conn = Connection(sock, 10)
        sock.sendall(_frame(cbor.dumps({"op": "install-begin", "size": None})))
        assert isinstance(decode_reply(conn.recv()), ReadyReply)
        sock.sendall(_chunk(image[:half]))
        with contextlib.suppress(OSError):  # the agent may hang up first: its reason waits
            sock.sendall(MID_SESSION_ATTACKS[attack])
        reply = decode_reply(conn.recv())
    assert isinstance(reply, ErrorReply) and reply.code == "ipc", reply
    status = world.client().status()
    assert status.slots["B"].state == "invalid" and status.trial_slot is None
    assert (status.running_sequence, status.rollback_floor) == (1, 1)
    assert not (world.root / "slots" / "B.hdr").exists()
    assert world.install(image).sequence == 2  # the next honest client is served


def test_genuine_image_in_one_byte_writes_still_installs(world: DeviceWorld) -> None:
    """The other side of strict framing: a client whose bytes arrive one at a time (a frame
    split over many reads) is not mistaken for an attacker."""
    image = world.image(2)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(world.running.socket))
        conn = Connection(sock, 10)
        data = (_frame(cbor.dumps({"op": "install-begin", "size": len(image)}))
                + _chunk(image[:300]))
        for i in range(len(data)):
            sock.send(data[i:i + 1])
        assert isinstance(decode_reply(conn.recv()), ReadyReply)
        sock.sendall(_chunk(image[300:]) + _frame(cbor.dumps({"op": "install-end"})))
        reply = decode_reply(conn.recv())
    assert not isinstance(reply, ErrorReply), reply
    assert world.client().status().trial_slot == "B"


def test_confirming_a_trial_that_never_booted_is_refused(world: DeviceWorld) -> None:
    """A client may not promote its own image to confirmed (raising the floor) before the
    boot code has run it."""
    world.install(world.image(2))
    with world.unchanged(), pytest.raises(DeviceStateError, match="not been booted"):
        world.client().confirm()

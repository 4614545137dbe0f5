"""A hostile client: crafted and random IPC traffic against a real agent. After each attack
the agent is still up, answers the next honest client, and device state is unchanged."""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sfupdate.errors import IpcError
from sfupdate.formats.ipc.framing import MAX_FRAME, Connection, PeerClosedError
from sfupdate.formats.ipc.messages import ErrorReply, ReadyReply, Reply, decode_reply
from sfupdate.formats.sfui import cbor
from tests.agent.support import AGENT_TIMEOUT, RunningAgent, install_when_idle, wait_for
from tests.conftest import SignImage

FIRMWARE_V2 = b"firmware v2 " * 4000


def frame(obj: Any) -> bytes:
    body = obj if isinstance(obj, bytes) else cbor.dumps(obj)
    return struct.pack(">I", len(body)) + body


def connect(agent: RunningAgent) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(agent.socket))
    return sock


def reply_of(sock: socket.socket, timeout: float = 10.0) -> Reply | None:
    """The agent's reply on this connection, or None if it closed without one."""
    try:
        return decode_reply(Connection(sock, timeout).recv())
    except PeerClosedError:
        return None


def attack(agent: RunningAgent, data: bytes, half_close: bool = True) -> Reply | None:
    with connect(agent) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the agent may hang up first; its reply is still readable
        return reply_of(sock)


def opened_session(agent: RunningAgent, data: bytes, seconds: float = 5.0) -> socket.socket:
    """Connect, send `data` (starting with install-begin) and return the socket once the agent
    said ready, retrying while it still winds down the previous abandoned session."""
    deadline = time.monotonic() + seconds
    while True:
        sock = connect(agent)
        sock.sendall(data)
        reply = reply_of(sock)
        if isinstance(reply, ReadyReply):
            return sock
        sock.close()
        if not (isinstance(reply, ErrorReply) and reply.code == "agent-busy"
                and time.monotonic() < deadline):
            raise AssertionError(f"no install session: {reply}")
        time.sleep(0.05)


def assert_protocol_error(reply: Reply | None, match: str = "") -> None:
    assert isinstance(reply, ErrorReply), reply
    assert reply.code == "ipc", reply
    assert match in reply.message, reply


@pytest.fixture
def image(sign_image: SignImage) -> bytes:
    return sign_image(payload=FIRMWARE_V2, sequence=2).read_bytes()


@pytest.fixture
def unchanged(agent: RunningAgent) -> Iterator[None]:
    """The test's attacks must leave device state exactly as it was, and the agent up."""
    before = agent.snapshot()
    yield
    agent.assert_alive()
    assert agent.snapshot() == before


BEGIN = {"op": "install-begin", "size": None}
#: Fewer bytes than the envelope's signed members: a session cut there never authenticates.
PRE_AUTH = 150


@pytest.mark.usefixtures("unchanged")
class TestCraftedTraffic:
    def test_oversized_frame_header_is_refused(self, agent: RunningAgent) -> None:
        assert_protocol_error(attack(agent, struct.pack(">I", MAX_FRAME + 1)), "exceeds the cap")
        assert_protocol_error(attack(agent, b"\xff\xff\xff\xff" + b"x" * 1000), "exceeds")

    def test_truncated_frames_are_refused(self, agent: RunningAgent) -> None:
        assert_protocol_error(attack(agent, frame({"op": "status"})[:-3]), "inside a frame")
        assert_protocol_error(attack(agent, b"\x00\x00"), "inside a frame")

    def test_frame_that_stalls_halfway_times_out(self, agent: RunningAgent) -> None:
        started = time.monotonic()
        assert_protocol_error(attack(agent, frame({"op": "status"})[:5], half_close=False),
                              "no complete message")
        assert time.monotonic() - started < AGENT_TIMEOUT + 3

    @pytest.mark.parametrize("body", [b"\xff\xfe\xfd", b"\x00", b"\xa1\x62op",
                                      b"\xbf\x62op\x66status\xff",
                                      cbor.dumps({"op": "status"}) + b"\x00",
                                      cbor.dumps(["op", "status"])],
                             ids=["garbage", "integer", "short-map", "indefinite", "trailing",
                                  "array"])
    def test_non_cbor_and_non_map_bodies_are_refused(self, agent: RunningAgent,
                                                     body: bytes) -> None:
        assert_protocol_error(attack(agent, frame(body)))

    @pytest.mark.parametrize(("message", "match"), [
        ({"op": "install-begin", "size": "big"}, "wrong type"),
        ({"op": "install-begin", "size": -5}, "wrong type"),
        ({"op": "status", "slot": "B"}, "unknown key"),
        ({"op": b"status"}, "unknown op"),
        ({"op": "flash-raw"}, "unknown op"),
        ({1: "status"}, "unknown op"),
        ({"op": "chunk", "data": b"\x00" * 16}, "only allowed inside an install"),
        ({"op": "install-end"}, "only allowed inside an install"),
    ])
    def test_wrong_types_unknown_ops_and_out_of_order_messages_are_refused(
            self, agent: RunningAgent, message: dict[Any, Any], match: str) -> None:
        assert_protocol_error(attack(agent, frame(message)), match)

    @pytest.mark.parametrize("intruder", [{"op": "confirm"}, {"op": "reject-trial"},
                                          {"op": "status"}, BEGIN])
    def test_other_requests_inside_an_install_session_are_refused(
            self, agent: RunningAgent, image: bytes, intruder: dict[str, Any]) -> None:
        data = frame(BEGIN) + frame({"op": "chunk", "data": image[:64]}) + frame(intruder)
        with opened_session(agent, data) as sock:
            assert_protocol_error(reply_of(sock), "not allowed inside an install session")

    def test_session_abandoned_before_authentication_changes_nothing(
            self, agent: RunningAgent, image: bytes) -> None:
        for cut in (0, 1, 40, 300):
            data = frame(BEGIN) + (frame({"op": "chunk", "data": image[:cut]}) if cut else b"")
            opened_session(agent, data).close()  # closed without install-end: dropped

    def test_session_ended_early_is_refused_as_truncated(self, agent: RunningAgent,
                                                         image: bytes) -> None:
        data = (frame(BEGIN) + frame({"op": "chunk", "data": image[:200]})
                + frame({"op": "install-end"}))
        with opened_session(agent, data) as sock:
            reply = reply_of(sock)
        assert isinstance(reply, ErrorReply) and reply.code == "truncated", reply

    def test_more_bytes_than_announced_are_refused(self, agent: RunningAgent,
                                                   image: bytes) -> None:
        data = frame({"op": "install-begin", "size": 10}) + frame({"op": "chunk",
                                                                   "data": image[:11]})
        with opened_session(agent, data) as sock:
            assert_protocol_error(reply_of(sock), "bytes announced")

    def test_idle_install_session_times_out_and_frees_the_agent(
            self, agent: RunningAgent, image: bytes) -> None:
        with opened_session(agent, frame(BEGIN) + frame({"op": "chunk",
                                                          "data": image[:100]})) as sock:
            assert_protocol_error(reply_of(sock), "no complete message")

    def test_connection_flood_does_not_take_the_agent_down(self, agent: RunningAgent) -> None:
        socks = []
        for _ in range(200):
            # OSError: the kernel's backlog is full, the flood is refused before the agent
            with contextlib.suppress(OSError):
                socks.append(connect(agent))
        for sock in socks:
            sock.close()
        deadline = time.monotonic() + AGENT_TIMEOUT + 5
        while True:  # idle connections hold their threads until they time out at worst
            try:
                agent.client().status()
                break
            except IpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def test_session_abandoned_mid_payload_leaves_only_the_slot_invalid(
        agent: RunningAgent, image: bytes, sign_image: SignImage) -> None:
    before = agent.snapshot()
    data = frame(BEGIN) + frame({"op": "chunk", "data": image[:-1000]})
    opened_session(agent, data).close()
    after = wait_for(agent, lambda status: status.slots["B"].state == "invalid").to_json()
    assert after["slots"]["B"]["state"] == "invalid"
    expected = before["status"]
    expected["slots"]["B"] = after["slots"]["B"]
    assert after == expected
    files = agent.snapshot()["files"]
    for name in ("slots/A.img", "slots/A.hdr"):
        assert files[name] == before["files"][name]
    agent.assert_alive()
    assert install_when_idle(agent, sign_image(payload=FIRMWARE_V2, sequence=2)).slot == "B"


def _random_message(rng: random.Random, image: bytes) -> bytes:
    """One piece of hostile traffic: raw noise, random frames, or near-valid messages."""
    head = image[:rng.randrange(1, PRE_AUTH)]
    values: list[Any] = [None, True, -1, 0, 2**64 - 1, "", "status", b"", b"\x00" * 9,
                         [1, 2], {"op": "status"}, head]
    ops = ["status", "install-begin", "chunk", "install-end", "confirm", "reject-trial", "x"]
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 64))
    if kind == 1:
        return frame(rng.randbytes(rng.randrange(1, 64)))
    if kind == 2:
        return struct.pack(">I", rng.randrange(2**32)) + rng.randbytes(rng.randrange(0, 16))
    message: dict[Any, Any] = {"op": rng.choice(ops)}
    for _ in range(rng.randrange(3)):
        message[rng.choice(["size", "data", "op", "extra", 7])] = rng.choice(values)
    data = frame(message)
    if kind == 3:
        pos = rng.randrange(len(data))
        data = data[:pos] + bytes([data[pos] ^ (1 << rng.randrange(8))]) + data[pos + 1:]
    if kind == 4:
        data = frame(BEGIN) + frame({"op": "chunk", "data": head}) + data
    return data


def test_random_traffic_never_hurts_the_agent_or_the_device(
        agent: RunningAgent, image: bytes, sign_image: SignImage) -> None:
    assert image.index(FIRMWARE_V2[:64]) > PRE_AUTH
    rng = random.Random(20261124)
    before = agent.snapshot()
    for _ in range(150):
        reply = attack(agent, _random_message(rng, image))
        assert reply is None or isinstance(reply, (ErrorReply, ReadyReply)), reply
        if isinstance(reply, ErrorReply):
            assert reply.code in ("ipc", "truncated", "agent-busy", "unknown-tag", "schema",
                                  "encoding", "device-state"), reply
    agent.assert_alive()
    assert agent.snapshot() == before
    assert install_when_idle(agent, sign_image(payload=FIRMWARE_V2, sequence=2)).sequence == 2


def test_socket_is_private_to_its_owner(agent: RunningAgent) -> None:
    assert agent.socket.stat().st_mode & 0o777 == 0o600
    assert Path(agent.socket).is_socket()

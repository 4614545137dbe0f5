"""Attack: resource exhaustion. The attacker cannot make the agent accept anything, so it tries
to make it allocate, hang or stop answering: an image that declares 10 GiB fed slowly, a flood
of connections, hundreds of abandoned install sessions. The agent's memory stays flat (its
VmRSS and VmHWM, read from /proc, stay within BOUND of what it used before the attack), its
threads and file descriptors come back to where they were, every attack ends in bounded time,
and an honest client is served afterwards. Only Unix sockets, only this machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sfupdate.errors import AgentBusyError, IpcError, TooLargeError
from sfupdate.formats.ipc.client import AgentClient
from sfupdate.formats.ipc.framing import Connection
from sfupdate.formats.sfui import cbor
from sfupdate.keys.files import FileSigner
from tests.agent.support import AGENT_TIMEOUT
from tests.device_world import DeviceWorld, envelope, manifest, process_memory, serving

MiB = 1 << 20
BOUND_KIB = 32 * 1024
TEN_GIB = 10 << 30
BIG_SLOT = 16 << 30  # sparse files: nothing is allocated on disk until written


def ten_gib_prefix(world: DeviceWorld) -> bytes:
    """A genuine-looking SFUI head, signed by the device's own author, declaring a 10 GiB
    image (the digest is of nothing: the install never gets that far)."""
    claimed_digest = hashlib.sha256(b"never sent").digest()
    return envelope(manifest(2, b"", image_size=TEN_GIB, digest=claimed_digest), b"",
                    world.author, declared=TEN_GIB)


def baseline(world: DeviceWorld) -> dict[str, int]:
    """The agent's resources once it has served an honest install and a status."""
    world.install(world.image(2))
    world.client().status()
    deadline = time.monotonic() + 5
    while process_memory(world.running.proc.pid)["threads"] > 1 and time.monotonic() < deadline:
        time.sleep(0.02)  # the last connection's thread is finishing
    return process_memory(world.running.proc.pid)


def assert_flat(world: DeviceWorld, before: dict[str, int], what: str,
                capsys: pytest.CaptureFixture[str]) -> None:
    world.client().status()  # an honest client is served
    deadline = time.monotonic() + AGENT_TIMEOUT + 5  # connection threads wind down
    after = process_memory(world.running.proc.pid)
    while (after["threads"], after["fds"]) > (before["threads"], before["fds"]) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
        after = process_memory(world.running.proc.pid)
    with capsys.disabled():
        print(f"\n[resources] {what}: agent VmRSS {before['rss_kib'] // 1024} -> "
              f"{after['rss_kib'] // 1024} MiB, VmHWM {before['hwm_kib'] // 1024} -> "
              f"{after['hwm_kib'] // 1024} MiB, threads {before['threads']} -> "
              f"{after['threads']}, fds {before['fds']} -> {after['fds']}")
    assert after["rss_kib"] <= before["rss_kib"] + BOUND_KIB
    assert after["hwm_kib"] <= max(before["hwm_kib"], before["rss_kib"] + BOUND_KIB)
    assert after["threads"] <= before["threads"]
    assert after["fds"] <= before["fds"]
    world.running.assert_alive()


def test_ten_gib_image_is_refused_before_the_agent_allocates_for_it(
        world: DeviceWorld, capsys: pytest.CaptureFixture[str]) -> None:
    before = baseline(world)
    head = ten_gib_prefix(world)
    sent = 0

    def slowly() -> Iterator[bytes]:
        nonlocal sent
        for i in range(0, len(head), 16):  # the head in 16-byte pieces, then zeros
            sent += 16
            yield head[i:i + 16]
            time.sleep(0.002)
        for _ in range(64):
            sent += 65536
            yield b"\x00" * 65536
            time.sleep(0.01)

    with world.unchanged(), pytest.raises(TooLargeError, match="does not fit"):
        world.client().install(slowly(), size=None)
    assert sent < 2 * MiB  # refused as soon as the signed size was read
    assert_flat(world, before, "10 GiB declared, 256 KiB slot", capsys)


@pytest.fixture
def big_world(tmp_path: Path, es256_signer: FileSigner) -> Iterator[DeviceWorld]:
    """A board whose slots are 16 GiB (sparse): a 10 GiB image fits. Its snapshot() would hash
    the slots, so the test below does not take one."""
    with serving(tmp_path, es256_signer, BIG_SLOT) as device:
        yield device


def test_ten_gib_image_that_fits_fed_slowly_is_ended_by_the_idle_timeout(
        big_world: DeviceWorld, capsys: pytest.CaptureFixture[str]) -> None:
    """The slot is big enough, so the agent streams the payload into it — one frame at a time,
    whatever the declared size — until the client stalls longer than the agent's timeout."""
    world = big_world
    before = baseline(world)
    head = ten_gib_prefix(world)

    def trickle_then_stall() -> Iterator[bytes]:
        yield head
        for _ in range(20):  # slow, but each message arrives within the timeout
            yield b"\x01"
            time.sleep(AGENT_TIMEOUT / 10)
        for _ in range(24):  # then some volume
            yield b"\x02" * MiB
        time.sleep(AGENT_TIMEOUT + 1.5)  # then nothing
        yield b"\x03"

    started = time.monotonic()
    with pytest.raises(IpcError, match="no complete message"):
        world.client().install(trickle_then_stall(), size=None)
    assert time.monotonic() - started < 3 * AGENT_TIMEOUT + 10
    status = world.client().status()
    assert status.slots["B"].state == "invalid" and status.trial_slot is None
    assert_flat(world, before, "10 GiB declared into a 16 GiB slot, fed slowly then stalled",
                capsys)


def _connect(world: DeviceWorld) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(str(world.running.socket))
    return sock


class LateClient(AgentClient):
    """A real client that sends its request only after the agent, at its cap, has answered
    "busy" and hung up: it must still report the agent's reason, not a broken pipe."""

    def _connect(self) -> Connection:
        conn = super()._connect()
        time.sleep(0.2)
        return conn


def test_connection_flood_hits_the_cap_and_honest_clients_are_served_after(
        world: DeviceWorld, capsys: pytest.CaptureFixture[str]) -> None:
    from sfupdate.secure.agent.server import MAX_CONNECTIONS

    before = baseline(world)
    held: list[socket.socket] = []
    try:
        for _ in range(MAX_CONNECTIONS):  # idle connections: each holds one serving thread
            held.append(_connect(world))
            held[-1].send(b"\x00")  # one byte of a frame header: the agent is reading
        time.sleep(0.2)
        with pytest.raises(AgentBusyError, match="too many connections"):
            world.client().status()
        with pytest.raises(AgentBusyError, match="too many connections"):
            LateClient(world.running.socket).status()
        refused = busy = 0
        for _ in range(300):  # the flood: each gets "busy" at once, or the kernel refuses it
            try:
                with _connect(world) as sock:
                    sock.shutdown(socket.SHUT_WR)
                    busy += bool(sock.recv(4096))
            except OSError:
                refused += 1
        assert busy + refused == 300 and busy > 0
    finally:
        for sock in held:
            sock.close()
    _served_again(world)
    with world.unchanged():
        pass
    assert_flat(world, before, f"{MAX_CONNECTIONS} held + 300 flooding connections "
                f"({busy} answered busy, {refused} refused by the kernel)", capsys)


def _served_again(world: DeviceWorld, seconds: float = 10.0) -> None:
    """Honest clients are served again once the flood stops: the agent's threads notice the
    closed connections and free their places (a moment later on a busy machine)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            world.client().status()
            return
        except AgentBusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _frame(obj: object) -> bytes:
    body = cbor.dumps(obj)
    return struct.pack(">I", len(body)) + body


def test_hundreds_of_abandoned_sessions_leave_nothing_behind(
        world: DeviceWorld, capsys: pytest.CaptureFixture[str]) -> None:
    before = baseline(world)
    image = world.image(3)
    begin = _frame({"op": "install-begin", "size": None})
    started, abandoned = time.monotonic(), 0
    for i in range(200):
        cut = (40, 600, len(image) // 2, len(image) - 1)[i % 4]  # before and after auth
        while True:
            with _connect(world) as sock:
                sock.sendall(begin)
                head = sock.recv(4)
                (length,) = struct.unpack(">I", head)
                reply = cbor.loads(sock.recv(length), "reply")
                if reply.get("reply") == "ready":
                    with contextlib.suppress(OSError):
                        sock.sendall(_frame({"op": "chunk", "data": image[:cut]}))
                    abandoned += 1
                    break  # closed here, mid-session
            assert reply.get("error") == "agent-busy", reply  # the last one winds down
            time.sleep(0.005)
    elapsed = time.monotonic() - started
    assert world.install_when_idle(world.image(3)).sequence == 3
    assert_flat(world, before, f"{abandoned} abandoned sessions in {elapsed:.1f} s", capsys)

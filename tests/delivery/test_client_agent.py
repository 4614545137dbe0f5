"""The client's hand-off to the real agent: one install session per update, chunk messages
batched without ever starving the agent's per-message timeout, and a stalled download resumed
inside the same session."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sfupdate import errors
from sfupdate.formats.ipc.client import COALESCE_SECONDS
from sfupdate.formats.ipc.framing import DEFAULT_TIMEOUT
from sfupdate.formats.ipc.messages import chunk_frame
from sfupdate.formats.sfui import cbor
from sfupdate.richos.client import TransferPolicy, update
from tests.agent.support import AGENT_TIMEOUT
from tests.conftest import SignImage
from tests.delivery.device import Device
from tests.delivery.netsim import FAST, HostileServer, RepoWorld, serve, target_path

Hostile = Callable[[Path], HostileServer]


def test_a_slow_source_never_starves_the_agent(sign_image: SignImage, device: Device) -> None:
    """Small pieces arriving for longer than the agent's per-message timeout: the client
    batches them, but sends what it holds at least every COALESCE_SECONDS, so the session
    survives and the image installs."""
    image = sign_image(b"slow firmware " * 200, sequence=2).read_bytes()
    pieces = [image[i:i + 150] for i in range(0, len(image), 150)]
    pause = (AGENT_TIMEOUT * 1.5) / len(pieces)
    assert COALESCE_SECONDS < pause * 3 < AGENT_TIMEOUT

    def trickle() -> Iterator[bytes]:
        for piece in pieces:
            time.sleep(pause)
            yield piece

    started = time.monotonic()
    result = device.install(trickle(), len(image))
    assert time.monotonic() - started > AGENT_TIMEOUT  # longer than one message may take
    assert result.sequence == 2
    device.assert_trial(2)


def test_fast_pieces_are_batched_into_few_messages(world: RepoWorld, hostile: Hostile,
                                                   device: Device) -> None:
    """A 200 kB image served in full arrives as a handful of chunk messages (the progress
    callback runs once per message), not one per network read."""
    image = world.image(2)
    server = hostile(world.publish(image))
    calls: list[tuple[int, int]] = []
    result = update(world.index(server.url), device, lambda d, t: calls.append((d, t)))
    assert result.installed is not None
    assert 1 <= len(calls) <= 4 and calls[-1][0] == calls[-1][1] == image.stat().st_size
    device.assert_trial(2)


def test_stalled_download_resumes_inside_the_same_install_session(
        world: RepoWorld, hostile: Hostile, device: Device) -> None:
    """The server goes silent halfway (no FIN, no RST): the client's read timeout fires, it
    resumes with Range, and the agent's session is still open to take the rest."""
    image = world.image(2)
    server = hostile(world.publish(image))
    data = image.read_bytes()
    half = len(data) // 2
    calls: list[int] = []

    def stall_once(h: object, start: int) -> None:
        calls.append(start)
        if len(calls) == 1:
            h.head(200, {"Content-Length": str(len(data))})  # type: ignore[attr-defined]
            h.wfile.write(data[:half])  # type: ignore[attr-defined]
            h.wfile.flush()  # type: ignore[attr-defined]
            time.sleep(FAST.read_timeout * 2)
            return
        serve(data)(h, start)  # type: ignore[arg-type]

    server.routes[target_path(image)] = stall_once
    log: list[str] = []
    result = update(world.index(server.url, log=log.append), device)
    assert result.installed is not None and result.installed.sequence == 2
    assert calls == [0, half]
    assert any("stalled" in line and f"resuming at byte {half}" in line for line in log)
    assert device.sessions == 1
    device.assert_trial(2)
    assert device.reboot().healthy


def test_default_limits_fit_one_stall_and_resume_in_the_agents_timeout() -> None:
    """A stall is noticed after the read timeout; the pause, a new connection and its first
    bytes follow. All of it, plus the longest batching delay, must stay below the agent's
    per-message timeout, or the resumed download would find its session gone."""
    policy = TransferPolicy()
    gap = 2 * policy.read_timeout + policy.backoff + policy.connect_timeout + COALESCE_SECONDS
    assert gap < DEFAULT_TIMEOUT
    fast_gap = 2 * FAST.read_timeout + FAST.backoff + COALESCE_SECONDS
    assert fast_gap < AGENT_TIMEOUT  # and the same holds for the test policy against the
    # test agent (the connection to 127.0.0.1 is immediate)


def test_a_batched_chunk_is_byte_for_byte_one_deterministic_chunk_message() -> None:
    parts = chunk_frame(b"ab", b"", b"cdef")
    assert b"".join(parts) == cbor.dumps({"op": "chunk", "data": b"abcdef"})


def test_the_agents_refusal_is_reported_rather_than_a_later_download_failure(
        device: Device) -> None:
    """Garbage (a captive portal's page) reaches the agent, which refuses it at once; the
    download then fails too. The agent's refusal, the first cause, is what the client says
    (a FormatError: another candidate is worth trying; not a network failure)."""
    def garbage_then_failure() -> Iterator[bytes]:
        yield b"<html><body>Please log in</body></html>".ljust(4096)
        time.sleep(AGENT_TIMEOUT / 3)  # the agent has refused meanwhile
        raise errors.DownloadError("connection dropped, giving up")

    with pytest.raises(errors.FormatError):
        device.install(garbage_then_failure(), 100_000)
    device.assert_unchanged()

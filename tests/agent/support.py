"""Helpers for the agent tests: a real agent process on a real Unix socket, device-state
snapshots, a stand-in for reboot."""

from __future__ import annotations

import hashlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfupdate.errors import AgentBusyError
from sfupdate.formats.ipc.client import AgentClient, AgentStatus, InstallResult

#: Short per-read timeout so abandoned sessions are dropped quickly in tests.
AGENT_TIMEOUT = 1.5


@dataclass
class RunningAgent:
    proc: subprocess.Popen[bytes]
    socket: Path
    board: Path
    log: Path

    def client(self, timeout: float = 10.0) -> AgentClient:
        return AgentClient(self.socket, timeout)

    def snapshot(self) -> dict[str, Any]:
        """Everything that makes up device state: what the agent reports, the bytes of both
        slots and their stored headers, and every file of secure storage and "hardware"."""
        files = {}
        for sub in ("slots", "secure", "hw"):
            for path in sorted((self.board / sub).rglob("*")):
                if path.is_file():
                    files[str(path.relative_to(self.board))] = hashlib.sha256(
                        path.read_bytes()).hexdigest()
        return {"status": self.client().status().to_json(), "files": files}

    def assert_alive(self) -> None:
        assert self.proc.poll() is None, f"agent died:\n{self.log.read_text()}"


def start_agent(board: Path, socket_dir: Path, *extra: str) -> RunningAgent:
    """`sfu agent serve` on `board` in its own process; `extra` are further serve options."""
    sock = socket_dir / "agent.sock"
    log = socket_dir / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sfupdate.cli.main", "agent", "serve", "--board", str(board),
             "--socket", str(sock), "--timeout", str(AGENT_TIMEOUT), *extra],
            stdout=out, stderr=out)
    agent = RunningAgent(proc, sock, board, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"agent failed to start:\n{log.read_text()}")
        if sock.exists() and _accepts(sock):  # bound AND listening
            return agent
        time.sleep(0.02)
    stop_agent(agent)
    raise AssertionError("agent did not create its socket in time")


def _accepts(sock: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(sock))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def stop_agent(agent: RunningAgent) -> None:
    if agent.proc.poll() is None:
        agent.proc.send_signal(signal.SIGTERM)
        try:
            agent.proc.wait(5)
        except subprocess.TimeoutExpired:
            agent.proc.kill()
            agent.proc.wait()


def file_chunks(path: Path, size: int = 4096) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(size):
            yield chunk


def wait_for(agent: RunningAgent, condition: Callable[[AgentStatus], bool],
             seconds: float = 5.0) -> AgentStatus:
    """Poll the agent's status until `condition` holds (the agent handles each connection on
    its own thread, so the effect of a closed connection shows a moment later)."""
    deadline = time.monotonic() + seconds
    while True:
        status = agent.client().status()
        if condition(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.02)


def install_when_idle(agent: RunningAgent, path: Path, seconds: float = 5.0) -> InstallResult:
    """Install `path`, retrying while the agent is still winding down an abandoned session."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return agent.client().install(file_chunks(path), size=path.stat().st_size)
        except AgentBusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)

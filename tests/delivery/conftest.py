"""Fixtures for the delivery tests: a repository world, hostile servers, and the device: a real
agent process on a provisioned sim board (the `agent` fixture of tests/conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sfupdate import keys
from sfupdate.authoring.repo import RepoServer
from sfupdate.formats.sfui import TrustedKey
from tests.agent.support import RunningAgent
from tests.conftest import SignImage
from tests.delivery.device import Device
from tests.delivery.netsim import HostileServer, RepoWorld


@pytest.fixture
def repo_key(tmp_path: Path) -> Path:
    path = tmp_path / "repo-key.pem"
    keys.write_private_key(keys.generate_private_key("ES256"), path)
    return path


@pytest.fixture
def firmware_pub(tmp_path: Path, es256_trusted: TrustedKey) -> Path:
    """The public PEM of the key `sign_image` signs with (for `--firmware-key`, `--trust`)."""
    path = tmp_path / "firmware.pub"
    path.write_bytes(keys.public_pem(es256_trusted.public_key))
    return path


@pytest.fixture
def world(tmp_path: Path, repo_key: Path, sign_image: SignImage,
          es256_trusted: TrustedKey) -> RepoWorld:
    """A repository whose firmware key is the one `sign_image` signs with."""
    return RepoWorld(tmp_path / "world", repo_key, sign_image, [es256_trusted])


@pytest.fixture
def device(agent: RunningAgent) -> Device:
    """The device the client updates: sequence 1 confirmed in slot A, floor 1."""
    return Device(agent)


@pytest.fixture
def hostile() -> Iterator[Callable[[Path], HostileServer]]:
    """hostile(root) -> a started HostileServer serving root; all are stopped afterwards."""
    servers: list[HostileServer] = []

    def start(root: Path) -> HostileServer:
        servers.append(HostileServer(root))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def dev_server() -> Iterator[Callable[[Path], RepoServer]]:
    """dev_server(root) -> a started `sfu serve` server; its log lines in server.lines."""
    started: list[tuple[RepoServer, threading.Thread]] = []

    def start(root: Path) -> RepoServer:
        lines: list[str] = []
        server = RepoServer(root, "127.0.0.1", 0, log=lines.append)
        server.lines = lines  # type: ignore[attr-defined]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(5)

"""Fixtures for the agent tests: a provisioned sim board and a real agent process on a real
Unix socket, stopped (and checked to be still alive) after every test."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sfupdate.board.sim import create_board
from sfupdate.boot.provision import provision
from sfupdate.sfui import TrustedKey
from tests.agent.support import FIRMWARE_V1, SLOT_SIZE, RunningAgent, start_agent, stop_agent
from tests.conftest import SignImage


@pytest.fixture
def board_dir(tmp_path: Path, sign_image: SignImage, es256_trusted: TrustedKey) -> Path:
    """A board provisioned with sequence 1 confirmed in slot A, trusting es256_signer."""
    root = tmp_path / "board"
    board = create_board(root, SLOT_SIZE)
    provision(board, [es256_trusted], "example.com", "demo-board",
              sign_image(payload=FIRMWARE_V1, sequence=1))
    return root


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory for sockets (sun_path is limited to 108 bytes; tmp_path can be
    longer)."""
    path = Path(tempfile.mkdtemp(prefix="sfu-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent(board_dir: Path, socket_dir: Path) -> Iterator[RunningAgent]:
    running = start_agent(board_dir, socket_dir)
    try:
        yield running
        running.assert_alive()
    finally:
        stop_agent(running)

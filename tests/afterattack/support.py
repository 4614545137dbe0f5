"""Helpers for the after-an-attack tests: signing commands and policies, running the CLI,
reading the device's secure state."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sfupdate import keys
from sfupdate.cli.main import main
from sfupdate.formats.remote import (
    IntegrityPolicy,
    Region,
    RemoteCommand,
    Target,
    sign_command,
    sign_policy,
    ueid_for,
)
from sfupdate.keys.files import FileSigner
from sfupdate.secure.board.records import BootRecord, EventLog, RemoteState, TrustStore
from sfupdate.secure.board.sim import open_board
from sfupdate.secure.kernel import Kernel, SecureState
from tests.agent.support import RunningAgent, start_agent, stop_agent
from tests.world import CLASS, VENDOR


def command(signer: FileSigner, target: Target, number: int, action: str,
            expires: int | None = None, issued: int | None = None, **arguments: Any) -> bytes:
    return sign_command(RemoteCommand(target, number, action, arguments, expires, issued),
                        signer)


def policy(signer: FileSigner, target: Target, sequence: int, *regions: Region) -> bytes:
    return sign_policy(IntegrityPolicy(target, sequence, regions), signer)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def state(board: Path) -> SecureState:
    return Kernel(open_board(board).storage).state()


def boot_record(board: Path) -> BootRecord:
    return state(board).boot


def trust_store(board: Path) -> TrustStore:
    return state(board).trust


def remote(board: Path) -> RemoteState:
    return state(board).remote


def events(board: Path) -> EventLog:
    return state(board).events


def flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """`sfu ARGS` in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys: pytest.CaptureFixture[str], code: int, *args: str | Path) -> str:
    """`sfu ARGS` must fail with `code` and exactly one `sfu: error:` line; returns it."""
    got, _, err = run(capsys, *args)
    lines = err.splitlines()
    assert got == code, err
    assert len(lines) == 1 and lines[0].startswith("sfu: error: "), err
    return lines[0]


def device_target(board: Path) -> Target:
    """This board's UEID, from its exported identity public key."""
    return Target(ueid=ueid_for(keys.load_public_key(board / "device-id.pub.pem").public_key))


def class_target() -> Target:
    return Target(vendor_id=VENDOR, class_id=CLASS)


@contextmanager
def serve_agent(board: Path, sockets: Path, *extra: str) -> Iterator[RunningAgent]:
    """A real agent process on `board`; checked alive at the end, always stopped."""
    running = start_agent(board, sockets, *extra)
    try:
        yield running
        running.assert_alive()
    finally:
        stop_agent(running)

"""Provisioned simulated boards for the board and boot tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from sfupdate.board.power import Power
from sfupdate.board.sim import SimBoard, create_board, open_board
from sfupdate.boot.provision import provision
from sfupdate.boot.rom import boot
from sfupdate.boot.stage2 import BootResult, boot_firmware
from sfupdate.keys.files import FileSigner
from sfupdate.sfui import TrustedKey

SLOT_SIZE = 64 * 1024
VENDOR_NAME = "example.com"
CLASS_NAME = "demo-board"


@dataclass
class Images:
    v1: Path
    v2: Path
    failing: Path  # sequence 3, carries the health-check failure marker


@pytest.fixture(scope="session")
def agent_signer() -> FileSigner:
    from sfupdate import keys
    return FileSigner(keys.generate_private_key("ES256"))


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory, es256_signer: FileSigner) -> Images:
    from sfupdate.author import ImageSpec, sign_firmware
    from tests.conftest import CLASS, VENDOR

    root = tmp_path_factory.mktemp("images")

    def make(name: str, payload: bytes, sequence: int) -> Path:
        (root / f"{name}.bin").write_bytes(payload)
        sign_firmware(root / f"{name}.bin", root / f"{name}.sfui", es256_signer,
                      ImageSpec(sequence, VENDOR, CLASS, f"{sequence}.0"))
        return root / f"{name}.sfui"

    return Images(make("v1", b"firmware one " * 300, 1), make("v2", b"firmware two " * 400, 2),
                  make("bad", b"firmware three SFU-HEALTH:FAIL " * 100, 3))


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory, images: Images,
             es256_trusted: TrustedKey, agent_signer: FileSigner) -> Path:
    """A board provisioned once per session with v1; tests copy it."""
    path = tmp_path_factory.mktemp("template") / "board"
    board = create_board(path, SLOT_SIZE)
    provision(board, [es256_trusted], VENDOR_NAME, CLASS_NAME, images.v1, agent_signer)
    return path


CopyBoard = Callable[[], Path]


@pytest.fixture
def fresh_board(tmp_path: Path, template: Path) -> CopyBoard:
    counter = iter(range(10**6))

    def copy() -> Path:
        dest = tmp_path / f"board{next(counter)}"
        shutil.copytree(template, dest)
        return dest

    return copy


@pytest.fixture
def board_dir(fresh_board: CopyBoard) -> Path:
    return fresh_board()


def reboot(board: SimBoard) -> BootResult:
    """A boot: the ROM verifies the agent bundle, then stage 2 runs in this process (the
    subprocess that runs the verified zipapp itself is exercised by the CLI tests)."""
    return boot(board, lambda _bundle: boot_firmware(board))


def fresh(path: Path, cut_at: int | None = None) -> SimBoard:
    return open_board(path, Power(cut_at))

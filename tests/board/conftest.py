"""Provisioned simulated boards for the board and boot tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from sfupdate.formats.sfui import TrustedKey
from sfupdate.keys.files import FileSigner
from tests.world import SMALL_SLOT_SIZE, provision_board


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
    from sfupdate.authoring.author import ImageSpec, sign_firmware
    from tests.world import CLASS, VENDOR

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
    provision_board(path, images.v1, [es256_trusted], slot_size=SMALL_SLOT_SIZE,
                    agent_signer=agent_signer)
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


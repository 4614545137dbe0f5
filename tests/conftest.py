"""Shared fixtures: keys, a builder for signed images, and a device (a provisioned sim board
with a real agent process on a real Unix socket) for every test that needs one."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sfupdate import keys
from sfupdate.authoring.author import ImageSpec, sign_firmware
from sfupdate.formats.sfui import TrustedKey
from sfupdate.keys.files import FileSigner
from tests.agent.support import RunningAgent, start_agent, stop_agent
from tests.world import CLASS, FIRMWARE_V1, VENDOR, provision_board


@pytest.fixture(scope="session")
def es256_signer() -> FileSigner:
    return FileSigner(keys.generate_private_key("ES256"))


@pytest.fixture(scope="session")
def eddsa_signer() -> FileSigner:
    return FileSigner(keys.generate_private_key("EdDSA"))


@pytest.fixture(scope="session")
def es256_trusted(es256_signer: FileSigner) -> TrustedKey:
    return TrustedKey(es256_signer.public_key)


SignImage = Callable[..., Path]


@pytest.fixture
def sign_image(tmp_path: Path, es256_signer: FileSigner) -> SignImage:
    """sign_image(payload=b'...', sequence=1, ...) -> path of a fresh SFUI."""
    counter = iter(range(10**6))

    def make(payload: bytes = b"firmware" * 100, sequence: int = 1,
             signer: FileSigner | None = None, vendor: uuid.UUID = VENDOR,
             klass: uuid.UUID = CLASS, version_text: str | None = "1.0.0",
             description: str | None = None) -> Path:
        n = next(counter)
        firmware = tmp_path / f"fw{n}.bin"
        firmware.write_bytes(payload)
        out = tmp_path / f"fw{n}.sfui"
        spec = ImageSpec(sequence, vendor, klass, version_text, description)
        sign_firmware(firmware, out, signer or es256_signer, spec)
        return out

    return make


# --- a device: a provisioned sim board and a real agent process --------------------------------


@pytest.fixture
def board_dir(tmp_path: Path, sign_image: SignImage, es256_trusted: TrustedKey) -> Path:
    """A board provisioned with sequence 1 confirmed in slot A, trusting es256_signer."""
    root = tmp_path / "board"
    provision_board(root, sign_image(payload=FIRMWARE_V1, sequence=1), [es256_trusted])
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
    """`sfu agent serve` on board_dir; checked to be still alive after the test, then
    stopped."""
    running = start_agent(board_dir, socket_dir)
    try:
        yield running
        running.assert_alive()
    finally:
        stop_agent(running)

"""A board of two components, "boot" and "app", provisioned with the set of sequence 1, and the
sets an author signs for it (tests copy the board)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pytest

from sfupdate.authoring.author import ImageSpec
from sfupdate.authoring.author.components import sign_components
from sfupdate.formats.sfui import TrustedKey
from sfupdate.keys.files import FileSigner
from tests.world import CLASS, VENDOR, provision_board

COMPONENTS: Final = [("boot", 16 * 1024), ("app", 32 * 1024)]


def boot_image(sequence: int) -> bytes:
    return f"bootloader {sequence} ".encode() * 600


def app_image(sequence: int) -> bytes:
    return f"application {sequence} ".encode() * 1200


SignSet = Callable[..., Path]


@pytest.fixture(scope="session")
def sign_set(tmp_path_factory: pytest.TempPathFactory, es256_signer: FileSigner) -> SignSet:
    """sign_set(sequence, boot=bytes, app=bytes, name=...): an SFUI of the components given."""
    root = tmp_path_factory.mktemp("sets")

    def make(sequence: int, name: str | None = None, **images: bytes) -> Path:
        label = name or f"set{sequence}-{'-'.join(images)}"
        files = []
        for component, data in images.items():
            (root / f"{label}.{component}.bin").write_bytes(data)
            files.append((component, root / f"{label}.{component}.bin"))
        out = root / f"{label}.sfui"
        sign_components(files, out, es256_signer, ImageSpec(sequence, VENDOR, CLASS,
                                                            f"{sequence}.0"))
        return out

    return make


@pytest.fixture(scope="session")
def set_template(tmp_path_factory: pytest.TempPathFactory, sign_set: SignSet,
                 es256_trusted: TrustedKey) -> Path:
    path = tmp_path_factory.mktemp("set-template") / "board"
    first = sign_set(1, boot=boot_image(1), app=app_image(1))
    provision_board(path, first, [es256_trusted], components=COMPONENTS)
    return path


CopyBoard = Callable[[], Path]


@pytest.fixture
def set_board(tmp_path: Path, set_template: Path) -> CopyBoard:
    counter = iter(range(10**6))

    def copy() -> Path:
        dest = tmp_path / f"board{next(counter)}"
        shutil.copytree(set_template, dest)
        return dest

    return copy

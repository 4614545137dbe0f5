"""Shared fixtures: keys and a builder for signed images."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from sfupdate import keys
from sfupdate.author import ImageSpec, sign_firmware
from sfupdate.keys.files import FileSigner
from sfupdate.sfui import TrustedKey, class_uuid, vendor_uuid

VENDOR = vendor_uuid("example.com")
CLASS = class_uuid(VENDOR, "demo-board")


@pytest.fixture(scope="session")
def es256_signer() -> FileSigner:
    return FileSigner(keys.generate_private_key("ES256"))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def eddsa_signer() -> FileSigner:
    return FileSigner(keys.generate_private_key("EdDSA"))  # type: ignore[arg-type]


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

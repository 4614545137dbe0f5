"""Fixtures of the key tests: one SoftHSM2 token for the session (a PKCS#11 module reads
its configuration once per process), the environment a signing command reads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sfupdate import keys
from sfupdate.formats.sfui import TrustedKey
from tests.keys.softhsm import PIN, SoftHsm


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    before = os.environ.get("SOFTHSM2_CONF")
    yield SoftHsm(tmp_path_factory.mktemp("softhsm"))
    if before is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = before


@pytest.fixture
def hsm_env(softhsm: SoftHsm, monkeypatch: pytest.MonkeyPatch) -> SoftHsm:
    """The module and PIN in the environment, as an operator's shell would set them."""
    monkeypatch.setenv("SFU_PKCS11_MODULE", softhsm.module)
    monkeypatch.setenv("SFU_PKCS11_PIN", PIN)
    return softhsm


@pytest.fixture
def pin_file(tmp_path: Path) -> Path:
    path = tmp_path / "token.pin"
    path.write_text(PIN + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def firmware_pub(tmp_path: Path, es256_trusted: TrustedKey) -> Path:
    """The public PEM of the key `sign_image` signs with (for `--firmware-key`)."""
    path = tmp_path / "firmware.pub"
    path.write_bytes(keys.public_pem(es256_trusted.public_key))
    return path

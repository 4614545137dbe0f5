"""A trust anchor is a public key: every option that takes one refuses a private key file
with one line (exit 6) instead of silently using its public half, so whoever is handed a
trust anchor file is never handed the power to sign."""

from __future__ import annotations

from pathlib import Path

import pytest

from sfupdate import errors, keys
from tests.afterattack.support import refused, run


@pytest.fixture
def private(tmp_path: Path) -> Path:
    path = tmp_path / "secret.key"
    keys.write_private_key(keys.generate_private_key("ES256"), path)
    return path


@pytest.fixture
def public(tmp_path: Path, private: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "secret.pub"
    assert run(capsys, "keys", "public", private, "-o", path)[0] == 0
    return path


def _commands(tmp_path: Path, anchor: Path, other: Path) -> dict[str, list[str | Path]]:
    """Each place a trust anchor is read, with `anchor` there (`other` wherever another
    existing file is needed)."""
    target = ["--vendor", "example.com", "--class", "demo-board"]
    return {
        "verify --key": ["verify", other, "--key", anchor],
        "repo init --firmware-key": ["repo", "init", tmp_path / "repo", "--key", other,
                                     "--firmware-key", anchor],
        "board provision --trust": ["board", "provision", tmp_path / "board", "--trust", anchor,
                                    *target, "--firmware", other],
        "board provision --operator": ["board", "provision", tmp_path / "board", "--trust",
                                       other, "--operator", anchor, *target, "--firmware",
                                       other],
        "board provision --recovery": ["board", "provision", tmp_path / "board", "--trust",
                                       other, "--recovery", anchor, *target, "--firmware",
                                       other],
        "remote sign --device-key": ["remote", "sign", "--key", other, "--action", "reboot",
                                     "--device-key", anchor, "--number", "1", "-o",
                                     tmp_path / "c.cose"],
        "remote sign --revoke": ["remote", "sign", "--key", other, "--action", "revoke-key",
                                 "--revoke", anchor, *target, "--number", "1", "-o",
                                 tmp_path / "c.cose"],
        "attest verify --device-key": ["attest", "verify", other, "--device-key", anchor,
                                       "--nonce", "00"],
    }


NAMES = list(_commands(Path(), Path(), Path()))


@pytest.mark.parametrize("where", NAMES)
def test_a_private_key_is_refused_as_a_trust_anchor(tmp_path: Path, private: Path,
                                                    public: Path, where: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "board", "create", tmp_path / "board", "--slot-size", "64KiB")[0] == 0
    args = _commands(tmp_path, private, public if where.startswith("board") else private)
    line = refused(capsys, errors.NotAPublicKeyError.exit_code, *args[where])
    assert f"{private} is a private key" in line and "sfu keys public" in line


def test_repo_add_trust_refuses_a_private_key(tmp_path: Path, private: Path, public: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    assert run(capsys, "repo", "init", repo, "--key", private, "--firmware-key", public)[0] == 0
    line = refused(capsys, 6, "repo", "add", repo, public, "--trust", private)
    assert "is a private key" in line


def test_the_public_half_is_accepted_where_the_private_key_was_refused(
        tmp_path: Path, private: Path, public: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    firmware = tmp_path / "fw.bin"
    firmware.write_bytes(b"x" * 64)
    assert run(capsys, "sign", firmware, "--key", private, "--sequence", "1", "--vendor",
               "example.com", "--class", "c", "-o", tmp_path / "fw.sfui")[0] == 0
    assert run(capsys, "verify", tmp_path / "fw.sfui", "--key", public)[0] == 0

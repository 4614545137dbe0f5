"""COSE algorithm IDs: sfupdate signs with the fully specified ESP256 (-9) and Ed25519 (-19)
that RFC 9864 defines and draft-ietf-suit-mti's profiles name; the deprecated polymorphic
ES256 (-7) and EdDSA (-8) are an option when signing and always accepted when reading."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from sfupdate import keys
from sfupdate.formats.sfui import AlgorithmStyle, EnvelopeReader, TrustedKey
from sfupdate.formats.sfui.cose import ALG_ED25519, ALG_EDDSA, ALG_ES256, ALG_ESP256
from sfupdate.keys.files import FileSigner
from tests.conftest import SignImage

# (key algorithm name, style) -> the COSE algorithm ID the signature must declare
EXPECTED = {
    ("ESP256", AlgorithmStyle.FULLY_SPECIFIED): ALG_ESP256,
    ("Ed25519", AlgorithmStyle.FULLY_SPECIFIED): ALG_ED25519,
    ("ESP256", AlgorithmStyle.POLYMORPHIC): ALG_ES256,
    ("Ed25519", AlgorithmStyle.POLYMORPHIC): ALG_EDDSA,
}


def _sfu(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sfupdate.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def _declared(path: Path) -> list[int]:
    with open(path, "rb") as f:
        return [s.algorithm for s in EnvelopeReader(f).signatures()]


def test_fully_specified_is_the_default() -> None:
    assert FileSigner(keys.generate_private_key("ESP256")).algorithm == -9
    assert FileSigner(keys.generate_private_key("Ed25519")).algorithm == -19


@pytest.mark.parametrize(("key_alg", "style"), sorted(EXPECTED, key=str))
def test_each_style_signs_and_verifies(key_alg: str, style: AlgorithmStyle,
                                       sign_image: SignImage) -> None:
    signer = FileSigner(keys.generate_private_key(key_alg), style)
    path = sign_image(b"fw" * 100, signer=signer)
    assert _declared(path) == [EXPECTED[(key_alg, style)]]
    reader = EnvelopeReader(io.BytesIO(path.read_bytes()))
    reader.authenticate([TrustedKey(signer.public_key)])
    assert b"".join(reader.payload()) == b"fw" * 100


@pytest.mark.parametrize(("name", "key_type"), [
    ("ESP256", "P-256"), ("ES256", "P-256"), ("Ed25519", "Ed25519"), ("EdDSA", "Ed25519")])
def test_key_names_and_aliases(name: str, key_type: str) -> None:
    assert keys.ALGORITHMS[name] == key_type
    signer = FileSigner(keys.generate_private_key(name))
    assert signer.algorithm == (ALG_ESP256 if key_type == "P-256" else ALG_ED25519)


def test_cli_sign_cose_alg_option(tmp_path: Path) -> None:
    key = tmp_path / "author.key"
    generated = _sfu("keys", "generate", "--alg", "Ed25519", "-o", key)
    assert generated.returncode == 0, generated.stderr
    assert "Ed25519 key" in generated.stdout
    firmware = tmp_path / "fw.bin"
    firmware.write_bytes(b"x" * 64)
    common = ("sign", firmware, "--key", key, "--sequence", "1", "--vendor", "example.com",
              "--class", "demo")
    default, poly = tmp_path / "default.sfui", tmp_path / "poly.sfui"
    assert _sfu(*common, "-o", default).returncode == 0
    assert _sfu(*common, "--cose-alg", "polymorphic", "-o", poly).returncode == 0
    assert _declared(default) == [ALG_ED25519]
    assert _declared(poly) == [ALG_EDDSA]
    inspected = _sfu("inspect", default)
    assert "Ed25519 by key" in inspected.stdout
    public = tmp_path / "author.pub"
    assert _sfu("keys", "public", key, "-o", public).returncode == 0
    for path in (default, poly):
        verified = _sfu("verify", path, "--key", public)
        assert verified.returncode == 0, verified.stderr
    bad = _sfu(*common, "--cose-alg", "es256", "-o", tmp_path / "bad.sfui")
    assert bad.returncode == 2

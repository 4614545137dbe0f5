"""`sfu sign --encrypt-for PUB --encrypt-kek FILE`: one ciphertext, a wrapped key per
recipient; each recipient decrypts it to the plaintext the signed digest names, nobody else
can; `sfu inspect` says it is encrypted and for whom; `sfu verify` checks what it can without
a key; a reader without the key refuses to hand out the payload as if it were checked."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sfupdate import errors, keys
from sfupdate.authoring.author.encrypt import load_kek
from sfupdate.formats.sfui import EnvelopeReader, key_id
from sfupdate.formats.sfui.encryption import (
    ContentCipher,
    kek_id,
    unwrap_with_kek,
    unwrap_with_private_key,
)
from tests.test_author_cli import sfu

FIRMWARE = bytes(range(256)) * 4099  # not a multiple of any chunk size


@pytest.fixture
def parties(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Path]:
    """An author key, two devices' encryption key pairs (public halves as PEM) and a KEK."""
    files = {"author": tmp_path / "author.key", "kek": tmp_path / "fleet.kek",
             "firmware": tmp_path / "fw.bin"}
    author = keys.generate_private_key("ES256")
    keys.write_private_key(author, files["author"])
    files["author.pub"] = tmp_path / "author.pub"
    files["author.pub"].write_bytes(keys.public_pem(author.public_key()))
    files["firmware"].write_bytes(FIRMWARE)
    for device in ("dev1", "dev2", "other"):
        private = ec.generate_private_key(ec.SECP256R1())
        keys.write_private_key(private, tmp_path / f"{device}.key")
        (tmp_path / f"{device}.pub").write_bytes(keys.public_pem(private.public_key()))
        files[device] = tmp_path / device
    assert sfu(capsys, "keys", "generate-kek", "-o", files["kek"])[0] == 0
    return files


def sign_encrypted(capsys: pytest.CaptureFixture[str], parties: dict[str, Path],
                   *extra: str | Path) -> Path:
    out = parties["firmware"].with_suffix(".sfui")
    code, _, err = sfu(capsys, "sign", parties["firmware"], "--key", parties["author"],
                       "--sequence", "7", "--vendor", "example.com", "--class", "demo-board",
                       "--encrypt-for", f"{parties['dev1']}.pub",
                       "--encrypt-for", f"{parties['dev2']}.pub",
                       "--encrypt-kek", parties["kek"], *extra, "-o", out, "--force")
    assert code == 0, err
    return out


def private(parties: dict[str, Path], device: str) -> ec.EllipticCurvePrivateKey:
    key = keys.load_private_key(Path(f"{parties[device]}.key"))
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def read_plaintext(image: Path, trusted: Path, unwrap: object) -> bytes:
    with image.open("rb") as f:
        reader = EnvelopeReader(f)
        verified = reader.authenticate([keys.load_public_half(trusted)])
        assert verified.encryption is not None
        cek = unwrap(verified.encryption)  # type: ignore[operator]
        return b"".join(reader.payload(4096, ContentCipher(verified.encryption, cek)))


@pytest.mark.parametrize("algorithm", ["A128GCM", "A256GCM", "A128CTR"])
def test_every_recipient_decrypts_one_ciphertext_to_the_signed_plaintext(
        capsys: pytest.CaptureFixture[str], parties: dict[str, Path], algorithm: str) -> None:
    image = sign_encrypted(capsys, parties, "--encrypt-alg", algorithm)
    assert FIRMWARE[:4096] not in image.read_bytes()  # nothing travels in clear
    for device in ("dev1", "dev2"):
        key = private(parties, device)
        assert read_plaintext(image, parties["author"], lambda info, key=key:
                              unwrap_with_private_key(info, key, key_id(key.public_key()))
                              ) == FIRMWARE
    kek = load_kek(parties["kek"])
    assert read_plaintext(image, parties["author"],
                          lambda info: unwrap_with_kek(info, kek, kek_id(kek))) == FIRMWARE


def test_a_device_that_is_not_a_recipient_cannot_decrypt(
        capsys: pytest.CaptureFixture[str], parties: dict[str, Path]) -> None:
    image = sign_encrypted(capsys, parties)
    other = private(parties, "other")
    with pytest.raises(errors.NotARecipientError, match="not for ECDH-ES"):
        read_plaintext(image, parties["author"], lambda info:
                       unwrap_with_private_key(info, other, key_id(other.public_key())))
    dev1 = private(parties, "dev1")  # another device's key under dev1's key ID
    with pytest.raises(errors.KeyUnwrapError):
        read_plaintext(image, parties["author"], lambda info:
                       unwrap_with_private_key(info, other, key_id(dev1.public_key())))


def test_a_reader_without_the_key_refuses_the_payload_and_verify_checks_its_length(
        capsys: pytest.CaptureFixture[str], parties: dict[str, Path]) -> None:
    image = sign_encrypted(capsys, parties)
    with image.open("rb") as f:
        reader = EnvelopeReader(f)
        reader.authenticate([keys.load_public_half(parties["author"])])
        with pytest.raises(errors.UnsupportedError, match="encrypted"):
            next(reader.payload())
    code, out, _ = sfu(capsys, "verify", image, "--key", parties["author.pub"], "--json")
    assert code == 0 and json.loads(out)["payload_checked"] is True
    image.write_bytes(image.read_bytes()[:-1])
    code, _, err = sfu(capsys, "verify", image, "--key", parties["author.pub"])
    assert code == errors.PayloadTooShortError.exit_code and "truncated" in err


def test_inspect_shows_the_payload_is_encrypted_and_for_which_keys(
        capsys: pytest.CaptureFixture[str], parties: dict[str, Path]) -> None:
    image = sign_encrypted(capsys, parties)
    code, out, _ = sfu(capsys, "inspect", image, "--json")
    desc = json.loads(out)
    assert code == 0
    assert desc["image_digest"] == hashlib.sha256(FIRMWARE).hexdigest()  # the plaintext's
    assert desc["payload"]["length"] == len(FIRMWARE) + 16  # the GCM tag
    kids = [key_id(private(parties, d).public_key()).hex() for d in ("dev1", "dev2")]
    kek = load_kek(parties["kek"])
    assert desc["encryption"] == {"algorithm": "A128GCM", "recipients": [
        {"algorithm": "ECDH-ES+A128KW", "key_id": kids[0]},
        {"algorithm": "ECDH-ES+A128KW", "key_id": kids[1]},
        {"algorithm": "A128KW", "key_id": kek_id(kek).hex()}]}
    code, out, _ = sfu(capsys, "inspect", image)
    assert "encrypted:    A128GCM, for 3 recipient(s)" in out
    assert f"ECDH-ES+A128KW key {kids[1]}" in out


def test_sign_refuses_a_recipient_that_is_not_a_p256_public_key(
        capsys: pytest.CaptureFixture[str], parties: dict[str, Path], tmp_path: Path) -> None:
    ed = tmp_path / "ed.pub"
    ed.write_bytes(keys.public_pem(keys.generate_private_key("Ed25519").public_key()))
    for bad in (ed, parties["author"]):
        code, _, err = sfu(capsys, "sign", parties["firmware"], "--key", parties["author"],
                           "--sequence", "1", "--vendor", "v", "--class", "c",
                           "--encrypt-for", bad, "-o", tmp_path / "x.sfui")
        assert code == errors.UsageError.exit_code and "sfu: error:" in err
        assert not (tmp_path / "x.sfui").exists()

"""Interoperability: the examples of draft-ietf-suit-firmware-encryption decrypt with its test
keys. The bytes and their provenance are in tests/data/suit-encryption-examples/SOURCE.md."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sfupdate import errors
from sfupdate.formats.sfui import cbor, manifest_digest
from sfupdate.formats.sfui.cose import Sign1
from sfupdate.formats.sfui.encryption import (
    ALG_A128CTR,
    ALG_A128GCM,
    ALG_A128KW,
    ALG_ECDH_ES_A128KW,
    ContentCipher,
    EncryptionInfo,
    unwrap_with_kek,
    unwrap_with_private_key,
)
from sfupdate.keys import load_public_key

DATA = Path(__file__).parent / "data" / "suit-encryption-examples"
KEK = b"a" * 16
KID_KW, KID_ES = b"kid-1", b"kid-2"
RECEIVER = ec.derive_private_key(
    0x60FE6DD6D85D5740A5349B6F91267EEAC5BA81B8CB53EE249E4B4EB102C476B3, ec.SECP256R1())
PLAINTEXT = b"This is a real firmware image."
CEK_GCM = bytes.fromhex("15F785B5C931414411B4B71373A9C0F7")
CEK_CTR = bytes.fromhex("261DE6165070FB8951EC5D7B92A065FE")
PARAM_CONTENT, PARAM_ENCRYPTION_INFO = 18, 19


def hexfile(name: str) -> bytes:
    return bytes.fromhex("".join((DATA / name).read_text().split()))


def decrypt(info: EncryptionInfo, cek: bytes, ciphertext: bytes, chunk: int = 7) -> bytes:
    """Decrypt in small chunks, as the agent streams."""
    cipher = ContentCipher(info, cek)
    out = [cipher.update(ciphertext[i:i + chunk]) for i in range(0, len(ciphertext), chunk)]
    return b"".join(out) + cipher.finish()


def signed_example(name: str) -> tuple[EncryptionInfo, bytes, dict[int, Any]]:
    """Verify a whole signed example envelope with the draft's key, then return its
    encryption info, its ciphertext (parameter-content) and the parameters around them."""
    envelope = cbor.loads(hexfile(name), name).value
    digest_bytes, block = cbor.loads(envelope[2], "authentication wrapper")
    manifest_bytes = envelope[3]
    Sign1.decode(block).verify(digest_bytes, [load_public_key(DATA / "signing-key-public.pem")])
    assert cbor.loads(digest_bytes, "digest")[1] == manifest_digest(manifest_bytes)
    manifest = cbor.loads(manifest_bytes, "manifest")
    install = next(v for k, v in manifest.items() if k in (17, 20))  # -17 numbering, then -2x
    commands = cbor.loads(install, "install")
    params: dict[int, Any] = {}
    for code, argument in zip(commands[::2], commands[1::2], strict=True):
        if code == 20:
            params.update(argument)
    encrypted = params[PARAM_ENCRYPTION_INFO]
    return EncryptionInfo.decode(encrypted), params[PARAM_CONTENT], params


def test_signed_es_dh_example_decrypts_with_the_receivers_key() -> None:
    info, ciphertext, _ = signed_example("suit-manifest-es-ecdh-content.hex.signed")
    assert info.algorithm == ALG_A128GCM and len(info.iv) == 16
    (recipient,) = info.recipients
    assert (recipient.algorithm, recipient.kid) == (ALG_ECDH_ES_A128KW, KID_ES)
    cek = unwrap_with_private_key(info, RECEIVER, KID_ES)
    assert decrypt(info, cek, ciphertext) == PLAINTEXT


def test_signed_aes_kw_example_decrypts_to_its_signed_digest() -> None:
    info, ciphertext, params = signed_example("suit-manifest-aes-kw-content.hex.signed")
    (recipient,) = info.recipients
    assert (recipient.algorithm, recipient.kid, recipient.protected) == (ALG_A128KW, KID_KW,
                                                                         b"\xa0")
    plaintext = decrypt(info, unwrap_with_kek(info, KEK, KID_KW), ciphertext)
    assert plaintext == PLAINTEXT + b"\n"
    image_digest = cbor.loads(params[3], "image-digest")  # suit-parameter-image-digest
    assert image_digest == [-16, hashlib.sha256(plaintext).digest()]
    assert params[14] == len(plaintext)  # suit-parameter-image-size


def test_aes_kw_aes_gcm_example_unwraps_the_stated_key_and_decrypts() -> None:
    info = EncryptionInfo.decode(hexfile("suit-encryption-info-aes-kw-aes-gcm.hex"))
    cek = unwrap_with_kek(info, KEK, KID_KW)
    assert cek == CEK_GCM
    assert decrypt(info, cek, hexfile("encrypted-payload-aes-gcm.hex")) == PLAINTEXT


def test_es_dh_aes_gcm_example_with_the_algorithm_unprotected_decrypts() -> None:
    info = EncryptionInfo.decode(hexfile("suit-encryption-info-es-ecdh-aes-gcm.hex"))
    (recipient,) = info.recipients
    assert recipient.protected == b"" and recipient.kid is None
    with pytest.raises(errors.NotARecipientError):  # it names no key: it is not "ours"
        unwrap_with_private_key(info, RECEIVER, KID_ES)
    cek = unwrap_with_private_key(info, RECEIVER, None)
    assert cek == CEK_GCM
    assert decrypt(info, cek, hexfile("encrypted-payload-aes-gcm.hex")) == PLAINTEXT


def test_aes_kw_aes_ctr_example_decrypts_without_a_tag() -> None:
    info = EncryptionInfo.decode(hexfile("suit-encryption-info-aes-kw-aes-ctr.hex"))
    assert info.algorithm == ALG_A128CTR and info.overhead == 0
    cek = unwrap_with_kek(info, KEK, KID_KW)
    assert cek == CEK_CTR
    assert decrypt(info, cek, hexfile("encrypted-payload-aes-kw-aes-ctr.hex")) == PLAINTEXT


@pytest.mark.parametrize("name", ["suit-encryption-info-aes-kw-aes-gcm.hex",
                                  "suit-encryption-info-es-ecdh-aes-gcm.hex",
                                  "suit-encryption-info-aes-kw-aes-ctr.hex"])
def test_examples_decode_and_encode_to_the_same_structure(name: str) -> None:
    info = EncryptionInfo.decode(hexfile(name))
    assert EncryptionInfo.decode(info.encode()) == info


def test_examples_refuse_the_wrong_key_and_a_flipped_bit() -> None:
    info = EncryptionInfo.decode(hexfile("suit-encryption-info-aes-kw-aes-gcm.hex"))
    with pytest.raises(errors.KeyUnwrapError):
        unwrap_with_kek(info, b"b" * 16, KID_KW)
    with pytest.raises(errors.NotARecipientError):
        unwrap_with_kek(info, KEK, b"kid-9")
    ciphertext = bytearray(hexfile("encrypted-payload-aes-gcm.hex"))
    ciphertext[3] ^= 1
    with pytest.raises(errors.CiphertextTagError):
        decrypt(info, CEK_GCM, bytes(ciphertext))

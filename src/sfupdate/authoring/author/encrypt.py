"""Encrypting a payload for its recipients while it is signed (draft-ietf-suit-firmware-
encryption): one fresh random content key (CEK) per image, wrapped once per recipient, so the
image is encrypted once however many devices may install it.

Recipients are devices' P-256 key-agreement keys (ECDH-ES+A128KW; `sfu board encryption-key`
exports one) and pre-shared 16-byte key-encryption keys (A128KW). The SUIT_Encryption_Info
goes into the manifest, so the author's signature covers it; the manifest's image-digest
stays the digest of the plaintext.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sfupdate.errors import UsageError
from sfupdate.formats.sfui import key_id
from sfupdate.formats.sfui.encryption import (
    ALG_A128GCM,
    CONTENT_ALGORITHMS,
    ContentEncryptor,
    EncryptionInfo,
    Recipient,
    kek_id,
    new_info,
    wrap_for_kek,
    wrap_for_public_key,
)
from sfupdate.keys.files import write_secret

KEK_SIZE = 16


class PayloadEncryption:
    """The encryption of one image: its SUIT_Encryption_Info and, once, its encryptor."""

    def __init__(self, public_keys: Sequence[ec.EllipticCurvePublicKey] = (),
                 keks: Sequence[bytes] = (), algorithm: int = ALG_A128GCM) -> None:
        if not public_keys and not keks:
            raise UsageError("encryption needs at least one recipient")
        cek = os.urandom(CONTENT_ALGORITHMS[algorithm][1])
        recipients: list[Recipient] = [wrap_for_public_key(cek, key, key_id(key))
                                       for key in public_keys]
        recipients += [wrap_for_kek(cek, kek, kek_id(kek)) for kek in keks]
        kids = [r.kid for r in recipients]
        if len(set(kids)) != len(kids):
            raise UsageError("a recipient is named twice")
        self.info: EncryptionInfo = new_info(algorithm, cek, recipients)
        self._cek = cek

    @property
    def overhead(self) -> int:
        return self.info.overhead

    def encryptor(self) -> ContentEncryptor:
        """The one encryptor of this image (the IV must never encrypt twice)."""
        if not self._cek:
            raise RuntimeError("this payload encryption was used already")
        encryptor, self._cek = ContentEncryptor(self.info, self._cek), b""
        return encryptor


def load_recipient_key(path: Path) -> ec.EllipticCurvePublicKey:
    """A device's public key-agreement key (P-256 SubjectPublicKeyInfo PEM)."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except (ValueError, UnsupportedAlgorithm):  # an unknown key type's OID
        raise UsageError(f"{path} is not a public key PEM") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve,
                                                                        ec.SECP256R1):
        raise UsageError(f"{path}: an encryption recipient must be a P-256 public key")
    return key


def load_kek(path: Path) -> bytes:
    """A pre-shared A128KW key-encryption key: a file of 32 hex digits (`sfu keys
    generate-kek`)."""
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the key-encryption key {path}: {exc}") from None
    try:
        kek = bytes.fromhex(text)
    except ValueError:
        raise UsageError(f"{path} is not a hex key-encryption key") from None
    if len(kek) != KEK_SIZE:
        raise UsageError(f"{path}: an A128KW key-encryption key is {KEK_SIZE} bytes "
                         f"({2 * KEK_SIZE} hex digits)")
    return kek


def write_kek(path: Path) -> bytes:
    """Create a fresh random A128KW key-encryption key file (mode 0600); its key ID."""
    kek = os.urandom(KEK_SIZE)
    write_secret(path, kek.hex().encode() + b"\n")
    return kek_id(kek)

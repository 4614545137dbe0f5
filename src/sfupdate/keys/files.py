"""PEM key files (PKCS#8 private, optionally passphrase-encrypted; SubjectPublicKeyInfo
public) and the file-backed signer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from sfupdate.errors import KeyFileError, KeyPassphraseError, NotAPublicKeyError, UsageError
from sfupdate.formats.sfui.cose import (
    AlgorithmStyle,
    PublicKey,
    TrustedKey,
    algorithm_for,
    ecdsa_der_to_raw,
    key_id,
)
from sfupdate.keys.unlock import Unlock

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

P256: Final = "P-256"
ED25519: Final = "Ed25519"
#: Algorithm names a key can be generated for, and the key type each makes: the fully
#: specified COSE names (RFC 9864) and the polymorphic ones as aliases. A PEM key file does not
#: record an algorithm; the COSE ID is chosen when signing (AlgorithmStyle).
ALGORITHMS: Final = {"ESP256": P256, "Ed25519": ED25519, "ES256": P256, "EdDSA": ED25519}
MAX_KEY_FILE: Final = 64 * 1024


def generate_private_key(algorithm: str) -> PrivateKey:
    kind = ALGORITHMS.get(algorithm)
    if kind == P256:
        return ec.generate_private_key(ec.SECP256R1())
    if kind == ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    raise UsageError(f"unknown algorithm {algorithm!r} (choose {', '.join(ALGORITHMS)})")


def write_private_key(key: PrivateKey, path: Path, passphrase: bytes | None = None) -> None:
    """Write a PKCS#8 PEM readable by the owner only, encrypted with `passphrase` if given
    (the best encryption the cryptography library offers); refuses to overwrite."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase
        else serialization.NoEncryption())
    write_secret(path, key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8, encryption))


def write_secret(path: Path, secret: bytes) -> None:
    """Create `path` readable by the owner only, holding `secret`, durably; refuses to
    overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secret)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:  # a disk full: no half-written key is left behind
        path.unlink(missing_ok=True)
        raise KeyFileError(f"cannot write {path}: {exc.strerror}") from None


def public_pem(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id_hex(key: PublicKey) -> str:
    return key_id(key).hex()


def _read(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read key {path}: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(f"{path} is too large to be a key file")
    return data


def _kind(key: object) -> str:
    """What a key is, in words (for errors): not the library's class name."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"an EC key on curve {key.curve.name}"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "an RSA key"
    return "a key of an unsupported type"


def _check_private(key: object, path: Path) -> PrivateKey:
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise KeyFileError(f"{path} is {_kind(key)}; sfu uses P-256 or Ed25519 keys")


def _check_public(key: object, path: Path | str) -> PublicKey:
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise KeyFileError(f"{path} is {_kind(key)}; sfu uses P-256 or Ed25519 keys")


def load_private_key(path: Path, unlock: Unlock | None = None) -> PrivateKey:
    """A private key from a PEM file; an encrypted one is opened with the passphrase
    `unlock` gives (file, environment or prompt)."""
    data = _read(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted: the library's way of saying it needs a password
        passphrase = (unlock or Unlock()).passphrase(str(path))
        try:
            key = serialization.load_pem_private_key(data, password=passphrase)
        except ValueError:
            raise KeyPassphraseError(f"{path}: wrong passphrase") from None
    except ValueError:  # its message names its parser and a URL: say what is wrong instead
        what = ("a public key, not the private key signing needs" if b"PUBLIC KEY" in data
                else "not a PEM private key (PKCS#8, \"BEGIN PRIVATE KEY\", as `sfu keys "
                     "generate` writes)")
        raise KeyFileError(f"{path} is {what}") from None
    return _check_private(key, path)


def load_public_key(path: Path) -> TrustedKey:
    """A trust anchor from a public PEM; a private key is refused: whoever holds a trust
    anchor file must not hold the power to sign with it."""
    data = _read(path)
    if b"PRIVATE KEY" in data:
        raise NotAPublicKeyError(f"{path} is a private key; a trust anchor is its public half "
                                 f"(sfu keys public {path} -o PUB.pem)")
    return parse_public_pem(data, str(path))


def public_half(path: Path, unlock: Unlock | None = None) -> TrustedKey:
    """The public key of a PEM file holding either half."""
    if b"PRIVATE KEY" in _read(path):
        return TrustedKey(load_private_key(path, unlock).public_key())
    return load_public_key(path)


def parse_public_pem(data: bytes, where: str) -> TrustedKey:
    """A trusted key from public PEM bytes; `where` names them in errors."""
    try:
        key = serialization.load_pem_public_key(data)
    # the library's message names its parser and a URL; an unknown OID is UnsupportedAlgorithm
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(f"{where} is not a PEM public key (SubjectPublicKeyInfo, "
                           "\"BEGIN PUBLIC KEY\", as `sfu keys public` writes)") from None
    return TrustedKey(_check_public(key, where))


class FileSigner:
    """Signs with a private key held in a PEM file (the key is loaded once), declaring the
    COSE algorithm ID of `style`."""

    def __init__(self, key: PrivateKey,
                 style: AlgorithmStyle = AlgorithmStyle.FULLY_SPECIFIED) -> None:
        self._key = key
        self.public_key: PublicKey = key.public_key()
        self._style = style

    @property
    def algorithm(self) -> int:
        return algorithm_for(self.public_key, self._style)

    @property
    def kid(self) -> bytes:
        return key_id(self.public_key)

    def sign(self, data: bytes) -> bytes:
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return ecdsa_der_to_raw(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
        return self._key.sign(data)

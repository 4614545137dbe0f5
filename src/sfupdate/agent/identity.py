"""The device identity key (P-256, created at provisioning, kept in secure storage): it signs
attestation tokens, and its public half names the device (its UEID)."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sfupdate.board.hal import SecureStorage
from sfupdate.board.records import RECORD_IDENTITY
from sfupdate.errors import DeviceStateError, StorageIntegrityError
from sfupdate.remote import ueid_for
from sfupdate.sfui import key_id
from sfupdate.sfui.cose import ALG_ES256, ecdsa_der_to_raw


class IdentitySigner:
    """A COSE signer (ES256) over the device identity key."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()

    @property
    def algorithm(self) -> int:
        return ALG_ES256

    @property
    def kid(self) -> bytes:
        return key_id(self.public_key)

    @property
    def ueid(self) -> bytes:
        return ueid_for(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return ecdsa_der_to_raw(self._key.sign(data, ec.ECDSA(hashes.SHA256())))


def load_identity(storage: SecureStorage) -> IdentitySigner:
    der = storage.read(RECORD_IDENTITY)
    if der is None:
        raise DeviceStateError("the board has no identity key: it is not provisioned")
    try:
        key = serialization.load_der_private_key(der, password=None)
    except ValueError:
        raise StorageIntegrityError("the stored identity key is unreadable") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve,
                                                                         ec.SECP256R1):
        raise StorageIntegrityError("the stored identity key is not a P-256 key")
    return IdentitySigner(key)

"""The device identity key (P-256, created at provisioning, kept in secure storage): it signs
attestation tokens, and its public half names the device (its UEID). The kernel reads it
(`Kernel.identity_key`)."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from sfupdate.formats.remote import ueid_for
from sfupdate.formats.sfui import key_id
from sfupdate.formats.sfui.cose import ALG_ES256, ecdsa_der_to_raw


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

"""The device's key-agreement key: the P-256 key that encrypted payloads are wrapped to
(ECDH-ES+A128KW, draft-ietf-suit-firmware-encryption).

It is never stored: it is derived from the device identity key (secure storage, created at
provisioning), so it lives exactly where the identity key lives, on every board backend, and
never leaves the secure side. It is a different key: the identity key signs (attestation,
command answers) and is never used for ECDH. The derivation is one-way (HKDF-SHA-256 with a
label of its own), so knowing the agreement key tells nothing of the identity key. The scalar
is made as FIPS 186-5 A.2.1 makes one from random bits: 64 bits more than the order, reduced
modulo n - 1, plus one.
"""

from __future__ import annotations

from typing import Final

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

#: The order of the P-256 group.
P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
LABEL: Final = b"sfupdate device key-agreement key v1"


def agreement_key(identity: ec.EllipticCurvePrivateKey) -> ec.EllipticCurvePrivateKey:
    """The key-agreement key of the device whose identity key is `identity`."""
    secret = identity.private_numbers().private_value.to_bytes(32, "big")
    bits = HKDF(hashes.SHA256(), 40, None, LABEL).derive(secret)  # 256 + 64 bits
    scalar = int.from_bytes(bits, "big") % (P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def agreement_public_pem(identity: ec.EllipticCurvePrivateKey) -> bytes:
    """The public half, as the authors' `sfu sign --encrypt-for` reads it."""
    return agreement_key(identity).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

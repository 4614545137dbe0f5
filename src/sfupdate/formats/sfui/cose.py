"""COSE_Sign1 (RFC 9052) with a detached payload, as SUIT's authentication blocks use it.

Only the algorithms below are accepted; the algorithm must match the key type. Key IDs are
SHA-256 of the key's DER SubjectPublicKeyInfo, so they are stable and computable by anyone
holding the public key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Protocol, TypeVar

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from sfupdate.errors import (
    SchemaError,
    SfuError,
    SignatureError,
    UnknownKeyError,
    UnknownTagError,
    UnsupportedAlgorithmError,
)
from sfupdate.formats.sfui import cbor

T = TypeVar("T")

ALG_ES256: Final = -7  # ECDSA w/ SHA-256 (P-256 by convention)
ALG_ESP256: Final = -9  # ECDSA P-256 w/ SHA-256, fully specified (RFC 9864)
ALG_EDDSA: Final = -8  # EdDSA (Ed25519 here)
ALG_ED25519: Final = -19  # Ed25519, fully specified (RFC 9864)

ALGORITHM_NAMES: Final = {
    ALG_ES256: "ES256",
    ALG_ESP256: "ESP256",
    ALG_EDDSA: "EdDSA",
    ALG_ED25519: "Ed25519",
}
_P256_ALGS: Final = frozenset({ALG_ES256, ALG_ESP256})
_ED25519_ALGS: Final = frozenset({ALG_EDDSA, ALG_ED25519})


class AlgorithmStyle(Enum):
    """Which COSE algorithm IDs a signer declares; both are accepted on read.

    RFC 9864 deprecates the polymorphic ES256 (-7) and EdDSA (-8), whose meaning depends on the
    key, for the fully specified ESP256 (-9) and Ed25519 (-19), the IDs draft-ietf-suit-mti's
    profiles name. Polymorphic is for recipients that do not know the new IDs yet."""

    FULLY_SPECIFIED = "fully-specified"
    POLYMORPHIC = "polymorphic"


def algorithm_for(key: PublicKey, style: AlgorithmStyle) -> int:
    """The COSE algorithm ID a signature by `key` declares in `style`."""
    p256 = isinstance(key, ec.EllipticCurvePublicKey)
    if style is AlgorithmStyle.FULLY_SPECIFIED:
        return ALG_ESP256 if p256 else ALG_ED25519
    return ALG_ES256 if p256 else ALG_EDDSA

HEADER_ALG: Final = 1
HEADER_KID: Final = 4
HEADER_CONTENT_TYPE: Final = 3

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def key_id(public_key: PublicKey) -> bytes:
    """Stable key ID: SHA-256 over the DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()


@dataclass(frozen=True)
class TrustedKey:
    """A public key the verifier trusts, with its key ID."""

    public_key: PublicKey

    @property
    def kid(self) -> bytes:
        return key_id(self.public_key)


class Signer(Protocol):
    """Anything that can sign: a key file today, a PKCS#11 token later."""

    @property
    def algorithm(self) -> int: ...

    @property
    def kid(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes:
        """Return the COSE-format signature (raw r||s for ECDSA) over data."""
        ...


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor.dumps(["Signature1", protected, b"", payload])


def sign1(payload: bytes, signer: Signer, detached: bool = True) -> bytes:
    """Encode a tagged COSE_Sign1 over payload; detached means the payload field is nil."""
    protected = cbor.dumps({HEADER_ALG: signer.algorithm})
    signature = signer.sign(_sig_structure(protected, payload))
    body = [protected, {HEADER_KID: signer.kid}, None if detached else payload, signature]
    return cbor.dumps(cbor2.CBORTag(cbor.TAG_COSE_SIGN1, body))


def ecdsa_der_to_raw(der: bytes) -> bytes:
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass(frozen=True)
class Sign1:
    """A decoded COSE_Sign1 (not yet verified)."""

    protected: bytes
    algorithm: int
    kid: bytes | None
    payload: bytes | None
    signature: bytes

    @classmethod
    def decode(cls, data: bytes) -> Sign1:
        item = cbor.loads(data, "COSE_Sign1")
        if not isinstance(item, cbor2.CBORTag) or item.tag != cbor.TAG_COSE_SIGN1:
            if isinstance(item, cbor2.CBORTag):
                raise UnknownTagError(
                    f"authentication block has tag {item.tag}; only COSE_Sign1 (18) is accepted"
                )
            raise SchemaError("authentication block is not a tagged COSE_Sign1")
        body = item.value
        if not (isinstance(body, list) and len(body) == 4):
            raise SchemaError("COSE_Sign1 must be an array of 4 items")
        protected, unprotected, payload, signature = body
        if not isinstance(protected, bytes) or not isinstance(unprotected, dict):
            raise SchemaError("COSE_Sign1 headers have the wrong types")
        if payload is not None and not isinstance(payload, bytes):
            raise SchemaError("COSE_Sign1 payload must be a byte string or nil")
        if not isinstance(signature, bytes):
            raise SchemaError("COSE_Sign1 signature must be a byte string")
        prot_map: Any = cbor.loads(protected, "COSE protected header") if protected else {}
        if not isinstance(prot_map, dict):
            raise SchemaError("COSE protected header is not a map")
        # Unprotected headers are not signed: accept only the key ID there, so that nothing
        # an attacker can rewrite changes how the block is read.
        if set(unprotected) - {HEADER_KID}:
            raise SchemaError("COSE unprotected header may only hold a key ID")
        if set(prot_map) - {HEADER_ALG, HEADER_KID, HEADER_CONTENT_TYPE}:
            raise SchemaError("COSE protected header has labels sfupdate does not understand")
        if set(prot_map) & set(unprotected):
            raise SchemaError("a COSE header label appears both protected and unprotected")
        alg = prot_map.get(HEADER_ALG)
        if not isinstance(alg, int) or isinstance(alg, bool):
            raise UnsupportedAlgorithmError("COSE_Sign1 has no protected algorithm")
        kid = prot_map.get(HEADER_KID, unprotected.get(HEADER_KID))
        if kid is not None and not isinstance(kid, bytes):
            raise SchemaError("COSE key ID must be a byte string")
        return cls(protected, alg, kid, payload, signature)

    def verify(self, detached_payload: bytes, trusted: Sequence[TrustedKey]) -> TrustedKey:
        """Return the trusted key that made this signature, or raise why none did."""
        if self.algorithm not in ALGORITHM_NAMES:
            raise UnsupportedAlgorithmError(f"COSE algorithm {self.algorithm} is not accepted")
        if self.payload is not None and self.payload != detached_payload:
            raise SignatureError("COSE_Sign1 carries a payload other than the manifest digest")
        candidates = [k for k in trusted if self.kid is None or k.kid == self.kid]
        if not candidates:
            shown = self.kid.hex()[:16] if self.kid else "?"
            raise UnknownKeyError(f"signed by unknown key {shown}")
        to_be_signed = _sig_structure(self.protected, detached_payload)
        mismatched_type = True
        for key in candidates:
            if not alg_fits_key(self.algorithm, key.public_key):
                continue
            mismatched_type = False
            if verify_raw(key.public_key, self.signature, to_be_signed):
                return key
        if mismatched_type:
            raise UnsupportedAlgorithmError(
                f"algorithm {ALGORITHM_NAMES[self.algorithm]} does not match the trusted key type"
            )
        raise SignatureError("signature does not verify with the trusted key")


def distinct_signers(blocks: Sequence[T], verify: Callable[[T], TrustedKey]
                     ) -> tuple[TrustedKey, ...]:
    """The distinct keys `verify` returns over the signature `blocks` (a key that signed
    twice counts once; a block that does not verify counts for nothing), in block order.
    None verifying raises the first block's error."""
    keys: dict[bytes, TrustedKey] = {}
    first: SfuError | None = None
    for block in blocks:
        try:
            key = verify(block)
        except SfuError as exc:
            first = first or exc
            continue
        keys.setdefault(key.kid, key)
    if not keys:
        if first is None:
            raise SignatureError("no signature")
        raise first
    return tuple(keys.values())


def open_attached(data: bytes, what: str, limit: int,
                  too_large: type[SfuError] = SchemaError) -> tuple[Sign1, bytes]:
    """A signed object's COSE_Sign1 and its attached payload, not yet verified: `what` (named
    in refusals) of at most `limit` bytes (else `too_large`), carrying a payload."""
    if len(data) > limit:
        raise too_large(f"{what} larger than {limit} bytes")
    envelope = Sign1.decode(data)
    if envelope.payload is None:
        raise SchemaError(f"{what} has no payload")
    return envelope, envelope.payload


def alg_fits_key(alg: int, key: PublicKey) -> bool:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return alg in _P256_ALGS and isinstance(key.curve, ec.SECP256R1)
    return alg in _ED25519_ALGS


def verify_raw(key: PublicKey, signature: bytes, data: bytes) -> bool:
    """Whether `signature` (COSE format: raw r||s for ECDSA) by `key` is valid over `data`."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            if len(signature) != 64:
                return False
            der = encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            )
            key.verify(der, data, ec.ECDSA(hashes.SHA256()))
        else:
            key.verify(signature, data)
    except InvalidSignature:
        return False
    return True

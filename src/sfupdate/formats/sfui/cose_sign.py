"""COSE_Sign (RFC 9052 §4.1): one attached payload signed by several keys, for objects a
threshold of anchors must sign (a trust update). Signatures are independent: each signer adds
its own COSE_Signature to the array, in any order and at any place (`add_signature`).

    COSE_Sign = 98([h'', {}, payload, [COSE_Signature, ...]])
    COSE_Signature = [protected: bstr .cbor {1: alg}, unprotected: {4: kid}, signature]
    Sig_structure = ["Signature", h'' (body protected), sign_protected, h'', payload]

The body carries no header; as for COSE_Sign1 (cose.py), a signature's unprotected header may
hold only its key ID and its protected header only the algorithm (and a key ID).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import cbor2

from sfupdate.errors import (
    LimitExceededError,
    SchemaError,
    SignatureError,
    UnknownKeyError,
    UnknownTagError,
    UnsupportedAlgorithmError,
)
from sfupdate.formats.sfui import cbor
from sfupdate.formats.sfui.cose import (
    ALGORITHM_NAMES,
    HEADER_ALG,
    HEADER_KID,
    Signer,
    TrustedKey,
    alg_fits_key,
    distinct_signers,
    verify_raw,
)

TAG_COSE_SIGN: Final = 98
#: Signatures one object may carry (bounded verification work).
MAX_SIGNATURES: Final = 16


@dataclass(frozen=True)
class Signature:
    """One COSE_Signature, not yet verified."""

    protected: bytes
    algorithm: int
    kid: bytes
    signature: bytes


def _to_be_signed(protected: bytes, payload: bytes) -> bytes:
    return cbor.dumps(["Signature", b"", protected, b"", payload])


def _signature(payload: bytes, signer: Signer) -> list[Any]:
    protected = cbor.dumps({HEADER_ALG: signer.algorithm})
    return [protected, {HEADER_KID: signer.kid}, signer.sign(_to_be_signed(protected, payload))]


def sign(payload: bytes, signers: Sequence[Signer]) -> bytes:
    """A tagged COSE_Sign over `payload` (attached) with one signature per signer."""
    if not signers:
        raise ValueError("a COSE_Sign needs at least one signer")
    signatures = [_signature(payload, s) for s in signers]
    return cbor.dumps(cbor2.CBORTag(TAG_COSE_SIGN, [b"", {}, payload, signatures]))


@dataclass(frozen=True)
class SignedObject:
    """A decoded COSE_Sign: its payload and signatures, not yet verified."""

    payload: bytes
    signatures: tuple[Signature, ...]
    raw: tuple[list[Any], ...]  # the signatures as decoded, to re-encode when adding one

    @classmethod
    def decode(cls, data: bytes, what: str, limit: int) -> SignedObject:
        """`what` (named in refusals) of at most `limit` bytes (LimitExceededError)."""
        if len(data) > limit:
            raise LimitExceededError(f"{what} larger than {limit} bytes")
        item = cbor.loads(data, what)
        if not isinstance(item, cbor2.CBORTag) or item.tag != TAG_COSE_SIGN:
            raise UnknownTagError(f"{what} is not a tagged COSE_Sign ({TAG_COSE_SIGN})")
        body = item.value
        if not (isinstance(body, list) and len(body) == 4):
            raise SchemaError(f"{what}: COSE_Sign must be an array of 4 items")
        protected, unprotected, payload, signatures = body
        if protected != b"" or unprotected != {}:
            raise SchemaError(f"{what}: the COSE_Sign body carries headers sfupdate does not "
                              "understand")
        if not isinstance(payload, bytes):
            raise SchemaError(f"{what} has no attached payload")
        if not isinstance(signatures, list) or not signatures:
            raise SchemaError(f"{what} carries no signature")
        if len(signatures) > MAX_SIGNATURES:
            raise LimitExceededError(f"{what} carries more than {MAX_SIGNATURES} signatures")
        return cls(payload, tuple(_decode_signature(s, what) for s in signatures),
                   tuple(signatures))

    def verified_keys(self, trusted: Sequence[TrustedKey]) -> tuple[TrustedKey, ...]:
        """The distinct trusted keys whose signature verifies (a key that signed twice
        counts once); a signature by a key not in `trusted`, or that fails, counts for
        nothing. None verifying raises why the first did not."""
        return distinct_signers(self.signatures,
                                lambda signature: _verify(signature, self.payload, trusted))

    def add_signature(self, signer: Signer) -> bytes:
        """This object with one more signature, by `signer` (whose key ID it must not carry
        yet: ValueError)."""
        if any(s.kid == signer.kid for s in self.signatures):
            raise ValueError("this key has already signed")
        if len(self.signatures) >= MAX_SIGNATURES:
            raise ValueError(f"at most {MAX_SIGNATURES} signatures fit")
        signatures = [*self.raw, _signature(self.payload, signer)]
        return cbor.dumps(cbor2.CBORTag(TAG_COSE_SIGN, [b"", {}, self.payload, signatures]))


def _decode_signature(item: Any, what: str) -> Signature:
    if not (isinstance(item, list) and len(item) == 3):
        raise SchemaError(f"{what}: a COSE_Signature must be an array of 3 items")
    protected, unprotected, signature = item
    if not isinstance(protected, bytes) or not isinstance(signature, bytes):
        raise SchemaError(f"{what}: a COSE_Signature has the wrong types")
    headers = cbor.loads(protected, "COSE protected header") if protected else {}
    if not isinstance(headers, dict) or set(headers) - {HEADER_ALG, HEADER_KID}:
        raise SchemaError(f"{what}: a COSE_Signature's protected header holds labels "
                          "sfupdate does not understand")
    if not isinstance(unprotected, dict) or set(unprotected) - {HEADER_KID} \
            or set(headers) & set(unprotected):
        raise SchemaError(f"{what}: a COSE_Signature's unprotected header may only hold a "
                          "key ID")
    alg = headers.get(HEADER_ALG)
    if not isinstance(alg, int) or isinstance(alg, bool):
        raise UnsupportedAlgorithmError(f"{what}: a signature has no protected algorithm")
    kid = headers.get(HEADER_KID, unprotected.get(HEADER_KID))
    if not isinstance(kid, bytes):
        raise SchemaError(f"{what}: every signature must name its key ID")
    return Signature(protected, alg, kid, signature)


def _verify(signature: Signature, payload: bytes, trusted: Sequence[TrustedKey]) -> TrustedKey:
    if signature.algorithm not in ALGORITHM_NAMES:
        raise UnsupportedAlgorithmError(f"COSE algorithm {signature.algorithm} is not accepted")
    key = next((k for k in trusted if k.kid == signature.kid), None)
    if key is None:
        raise UnknownKeyError(f"signed by unknown key {signature.kid.hex()[:16]}")
    if not alg_fits_key(signature.algorithm, key.public_key):
        raise UnsupportedAlgorithmError(f"algorithm {ALGORITHM_NAMES[signature.algorithm]} "
                                        "does not match the trusted key type")
    if not verify_raw(key.public_key, signature.signature,
                      _to_be_signed(signature.protected, payload)):
        raise SignatureError("signature does not verify with the trusted key")
    return key


__all__ = ["MAX_SIGNATURES", "SignedObject", "sign"]

"""Interoperability with an independent COSE implementation (cwt, from PyPI).

cwt verifies the COSE_Sign1 in an SFUI we signed, and we verify one that cwt made.
"""

from __future__ import annotations

import io

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cwt import COSE, COSEKey, VerifyError

from sfupdate import keys
from sfupdate.formats.sfui import (
    ALGORITHM_NAMES,
    AlgorithmStyle,
    Digest,
    EnvelopeReader,
    TrustedKey,
    cbor,
    manifest_digest,
    suit,
)
from sfupdate.formats.sfui.cose import Sign1
from sfupdate.keys.files import FileSigner
from tests.envelopes import envelope, manifest_for

PAYLOAD = b"interop" * 50
# cwt's name of each COSE algorithm: (key type, how our signer declares it).
ALGS = {
    "ESP256": ("ESP256", AlgorithmStyle.FULLY_SPECIFIED),
    "Ed25519": ("Ed25519", AlgorithmStyle.FULLY_SPECIFIED),
    "ES256": ("ESP256", AlgorithmStyle.POLYMORPHIC),
    "EdDSA": ("Ed25519", AlgorithmStyle.POLYMORPHIC),
}


def _signer(alg: str) -> FileSigner:
    key_type, style = ALGS[alg]
    return FileSigner(keys.generate_private_key(key_type), style)


def _private_pem(signer: FileSigner) -> bytes:
    return signer._key.private_bytes(  # test-only access to the key under test
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


@pytest.mark.parametrize("alg", sorted(ALGS))
def test_cwt_verifies_our_signature(alg: str) -> None:
    signer = _signer(alg)
    assert ALGORITHM_NAMES[signer.algorithm] == alg
    data = envelope(manifest_for(PAYLOAD), signer, PAYLOAD)
    auth = cbor2.loads(cbor2.loads(data).value[suit.ENV_AUTHENTICATION])
    digest_bytes, sign1 = auth[0], auth[1]
    public = COSEKey.from_pem(keys.public_pem(signer.public_key), alg=alg, kid=signer.kid)
    cose = COSE.new()
    assert cose.decode(sign1, public, detached_payload=digest_bytes) == digest_bytes
    with pytest.raises(VerifyError):
        cose.decode(sign1, public, detached_payload=digest_bytes[:-1] + b"\x00")


@pytest.mark.parametrize("alg", sorted(ALGS))
def test_we_verify_cwt_signature(alg: str) -> None:
    signer = _signer(alg)
    private = COSEKey.from_pem(_private_pem(signer), alg=alg)
    manifest = manifest_for(PAYLOAD)
    digest_bytes = Digest(manifest_digest(manifest)).encode()
    # cwt makes an attached COSE_Sign1; we accept it when its payload is the manifest digest.
    sign1 = COSE.new(alg_auto_inclusion=True).encode_and_sign(digest_bytes, private)
    assert ALGORITHM_NAMES[Sign1.decode(sign1).algorithm] == alg
    auth = cbor.dumps([digest_bytes, sign1])
    data = envelope(manifest, None, PAYLOAD, members={suit.ENV_AUTHENTICATION: auth})
    reader = EnvelopeReader(io.BytesIO(data))
    verified = reader.authenticate([TrustedKey(signer.public_key)])
    assert b"".join(reader.payload()) == PAYLOAD
    assert verified.signer.kid == signer.kid

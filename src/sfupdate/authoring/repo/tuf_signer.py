"""Our signers (key files, keys in PKCS#11 tokens) as securesystemslib signers, so python-tuf
signs repository metadata with them."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from securesystemslib.signer import Key, SecretsHandler, Signature, Signer, SSlibKey

from sfupdate.keys import KeySigner, Unlock, load_signer


class TufSigner(Signer):
    """Signs TUF metadata with a `KeySigner`. The key is the SSlibKey of its public key
    (scheme ecdsa-sha2-nistp256 or ed25519, the default key ID), so metadata signed through
    it verifies like metadata signed by securesystemslib's own CryptoSigner."""

    def __init__(self, signer: KeySigner) -> None:
        self.signer = signer
        self._key = SSlibKey.from_crypto(signer.public_key)

    @property
    def public_key(self) -> SSlibKey:
        return self._key

    def sign(self, payload: bytes) -> Signature:
        raw = self.signer.sign(payload)
        if isinstance(self.signer.public_key, ec.EllipticCurvePublicKey):
            # COSE wants raw r||s; securesystemslib's ecdsa schemes verify DER
            raw = encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                       int.from_bytes(raw[32:], "big"))
        return Signature(self._key.keyid, raw.hex())

    @classmethod
    def from_priv_key_uri(cls, priv_key_uri: str, public_key: Key,
                          secrets_handler: SecretsHandler | None = None) -> TufSigner:
        """securesystemslib's factory: a key file path or pkcs11: URI, for `public_key`."""
        signer = cls(load_signer(priv_key_uri, unlock=Unlock(prompt=secrets_handler)))
        if signer.public_key.keyid != public_key.keyid:
            raise ValueError(f"{priv_key_uri} is not the private half of key "
                             f"{public_key.keyid}")
        return signer

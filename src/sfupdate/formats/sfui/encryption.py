"""SUIT_Encryption_Info: the COSE_Encrypt (RFC 9052 section 5.1) that tells a recipient how to
decrypt a payload, as draft-ietf-suit-firmware-encryption-23 profiles it.

* Content encryption: A128GCM or A256GCM (AEAD, RFC 9053 section 4.1; the 16-byte tag follows
  the ciphertext) or A128CTR / A256CTR (RFC 9459; no tag: the signed plaintext digest is the
  only integrity, as the draft requires for these ciphers).
* Content key distribution: A128KW with a pre-shared key-encryption key (RFC 9053 section
  6.2.1), or ECDH-ES+A128KW to a recipient's P-256 key (RFC 9053 section 6.4), the KEK derived
  by HKDF-SHA-256 over the COSE_KDF_Context the draft fixes (section 5.2 of RFC 9053, with
  SuppPubInfo.other = "SUIT Payload Encryption").

The ciphertext is detached (the COSE_Encrypt carries nil): it is the SFUI's integrated payload.
The whole structure is a manifest parameter, so the manifest signature covers every header,
the unprotected ones too; that is why an algorithm in an unprotected header is accepted here.

Decryption streams: `ContentCipher` turns ciphertext chunks into plaintext chunks with one
16-byte tail held back for the GCM tag, so memory stays flat for any payload size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import (
    AEADDecryptionContext,
    AEADEncryptionContext,
    Cipher,
    CipherContext,
    algorithms,
    modes,
)
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from sfupdate.errors import (
    CiphertextTagError,
    KeyUnwrapError,
    LimitExceededError,
    NotARecipientError,
    SchemaError,
    UnsupportedAlgorithmError,
)
from sfupdate.formats.sfui import cbor

TAG_COSE_ENCRYPT: Final = 96

ALG_A128GCM: Final = 1
ALG_A256GCM: Final = 3
ALG_A128CTR: Final = -65534
ALG_A256CTR: Final = -65532
ALG_A128KW: Final = -3
ALG_ECDH_ES_A128KW: Final = -29

HEADER_ALG: Final = 1
HEADER_KID: Final = 4
HEADER_IV: Final = 5
HEADER_EPHEMERAL_KEY: Final = -1

COSE_KEY_KTY: Final = 1
COSE_KTY_EC2: Final = 2
COSE_KEY_CRV: Final = -1
COSE_CRV_P256: Final = 1
COSE_KEY_X: Final = -2
COSE_KEY_Y: Final = -3

#: SuppPubInfo.other of the draft's COSE_KDF_Context.
KDF_OTHER: Final = b"SUIT Payload Encryption"
GCM_TAG: Final = 16
GCM_IV: Final = 12  # RFC 9053 section 4.1
CTR_IV: Final = 16  # RFC 9459: the whole initial counter block
MAX_RECIPIENTS: Final = 16
MAX_INFO_SIZE: Final = 8 * 1024

#: Content algorithms: name, key length in bytes, whether AEAD.
CONTENT_ALGORITHMS: Final = {
    ALG_A128GCM: ("A128GCM", 16, True), ALG_A256GCM: ("A256GCM", 32, True),
    ALG_A128CTR: ("A128CTR", 16, False), ALG_A256CTR: ("A256CTR", 32, False),
}
KEY_ALGORITHMS: Final = {ALG_A128KW: "A128KW", ALG_ECDH_ES_A128KW: "ECDH-ES+A128KW"}
CONTENT_BY_NAME: Final = {name: alg for alg, (name, _, _) in CONTENT_ALGORITHMS.items()}
#: IV lengths accepted on read. GCM: the 96 bits of RFC 9053, and 128 bits because the draft's
#: own examples use them (GCM takes any IV length; we only ever write 96 bits).
_IV_LENGTHS: Final = {True: (GCM_IV, 16), False: (CTR_IV,)}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SchemaError(message)


@dataclass(frozen=True)
class Recipient:
    """One COSE_recipient: the CEK wrapped for one key."""

    algorithm: int
    kid: bytes | None
    wrapped_key: bytes
    protected: bytes = b""
    #: ECDH-ES only: the sender's ephemeral P-256 public key, as a COSE_Key map.
    ephemeral: dict[int, Any] | None = None

    def to_cbor(self) -> list[Any]:
        unprotected: dict[int, Any] = {}
        if HEADER_ALG not in _header_map(self.protected, "COSE_recipient protected header"):
            unprotected[HEADER_ALG] = self.algorithm
        if self.kid is not None:
            unprotected[HEADER_KID] = self.kid
        if self.ephemeral is not None:
            unprotected[HEADER_EPHEMERAL_KEY] = self.ephemeral
        return [self.protected, unprotected, self.wrapped_key]

    @classmethod
    def from_cbor(cls, obj: Any) -> Recipient:
        _require(isinstance(obj, list) and len(obj) == 3, "a COSE_recipient is not [3 items]")
        protected, unprotected, wrapped = obj
        _require(isinstance(protected, bytes) and isinstance(unprotected, dict)
                 and isinstance(wrapped, bytes), "a COSE_recipient has members of wrong types")
        prot = _header_map(protected, "COSE_recipient protected header")
        alg = _algorithm(prot, unprotected, "COSE_recipient")
        if alg not in KEY_ALGORITHMS:
            raise UnsupportedAlgorithmError(f"content key distribution algorithm {alg} is not "
                                            "supported (A128KW, ECDH-ES+A128KW)")
        allowed = {HEADER_ALG, HEADER_KID} | ({HEADER_EPHEMERAL_KEY}
                                              if alg == ALG_ECDH_ES_A128KW else set())
        _require(not (set(prot) | set(unprotected)) - allowed,
                 "a COSE_recipient has header labels sfupdate does not understand")
        _require(set(prot) <= {HEADER_ALG}, "a COSE_recipient protects more than its algorithm")
        kid = unprotected.get(HEADER_KID)
        _require(kid is None or isinstance(kid, bytes), "a recipient key ID is not bytes")
        _require(len(wrapped) in (24, 40), "a wrapped content key is neither 128 nor 256 bits")
        ephemeral = unprotected.get(HEADER_EPHEMERAL_KEY)
        if alg == ALG_ECDH_ES_A128KW:
            _require(isinstance(ephemeral, dict), "ECDH-ES recipient without an ephemeral key")
            _public_key(ephemeral)  # refuse a malformed or off-curve point now
        return cls(alg, kid, wrapped, protected, ephemeral)

    @property
    def name(self) -> str:
        return KEY_ALGORITHMS[self.algorithm]


@dataclass(frozen=True)
class EncryptionInfo:
    """A decoded SUIT_Encryption_Info (COSE_Encrypt_Tagged with a detached ciphertext)."""

    algorithm: int
    iv: bytes
    recipients: tuple[Recipient, ...]
    protected: bytes

    @property
    def name(self) -> str:
        return CONTENT_ALGORITHMS[self.algorithm][0]

    @property
    def aead(self) -> bool:
        return CONTENT_ALGORITHMS[self.algorithm][2]

    @property
    def key_length(self) -> int:
        return CONTENT_ALGORITHMS[self.algorithm][1]

    @property
    def overhead(self) -> int:
        """How many bytes longer the ciphertext is than the plaintext (the GCM tag)."""
        return GCM_TAG if self.aead else 0

    def encode(self) -> bytes:
        unprotected: dict[int, Any] = {HEADER_IV: self.iv}
        if HEADER_ALG not in _header_map(self.protected, "COSE_Encrypt protected header"):
            unprotected[HEADER_ALG] = self.algorithm
        body = [self.protected, unprotected, None, [r.to_cbor() for r in self.recipients]]
        return cbor.dumps(cbor2.CBORTag(TAG_COSE_ENCRYPT, body))

    @classmethod
    def decode(cls, data: bytes) -> EncryptionInfo:
        if len(data) > MAX_INFO_SIZE:
            raise LimitExceededError(f"encryption info larger than {MAX_INFO_SIZE} bytes")
        item = cbor.loads(data, "encryption info", tags=frozenset({TAG_COSE_ENCRYPT}),
                          key_order=False)
        _require(isinstance(item, cbor2.CBORTag) and item.tag == TAG_COSE_ENCRYPT,
                 "encryption info is not a tagged COSE_Encrypt (96)")
        body = item.value
        _require(isinstance(body, list) and len(body) == 4, "COSE_Encrypt is not [4 items]")
        protected, unprotected, ciphertext, recipients = body
        _require(isinstance(protected, bytes) and isinstance(unprotected, dict),
                 "COSE_Encrypt headers have the wrong types")
        _require(ciphertext is None, "COSE_Encrypt must have a detached (nil) ciphertext: the "
                                     "ciphertext is the integrated payload")
        _require(isinstance(recipients, list) and 0 < len(recipients) <= MAX_RECIPIENTS,
                 f"COSE_Encrypt needs 1 to {MAX_RECIPIENTS} recipients")
        prot = _header_map(protected, "COSE_Encrypt protected header")
        alg = _algorithm(prot, unprotected, "COSE_Encrypt")
        if alg not in CONTENT_ALGORITHMS:
            raise UnsupportedAlgorithmError(f"content encryption algorithm {alg} is not "
                                            "supported (A128GCM, A256GCM, A128CTR, A256CTR)")
        _require(not (set(prot) | set(unprotected)) - {HEADER_ALG, HEADER_IV},
                 "COSE_Encrypt has header labels sfupdate does not understand")
        iv = unprotected.get(HEADER_IV)
        aead = CONTENT_ALGORITHMS[alg][2]
        _require(isinstance(iv, bytes) and len(iv) in _IV_LENGTHS[aead],
                 f"COSE_Encrypt IV must be {' or '.join(map(str, _IV_LENGTHS[aead]))} bytes")
        return cls(alg, iv, tuple(Recipient.from_cbor(r) for r in recipients), protected)

    def kids(self) -> list[bytes | None]:
        return [r.kid for r in self.recipients]


def _header_map(protected: bytes, what: str) -> dict[Any, Any]:
    if not protected:
        return {}
    value = cbor.loads(protected, what, key_order=False)
    if not isinstance(value, dict):
        raise SchemaError(f"{what} is not a map")
    return value


def _algorithm(prot: dict[Any, Any], unprotected: dict[Any, Any], what: str) -> int:
    _require(not (HEADER_ALG in prot and HEADER_ALG in unprotected),
             f"{what} names its algorithm twice")
    alg = prot.get(HEADER_ALG, unprotected.get(HEADER_ALG))
    if not isinstance(alg, int) or isinstance(alg, bool):
        raise UnsupportedAlgorithmError(f"{what} names no algorithm")
    return alg


def _public_key(cose_key: dict[Any, Any]) -> ec.EllipticCurvePublicKey:
    _require(cose_key.get(COSE_KEY_KTY) == COSE_KTY_EC2
             and cose_key.get(COSE_KEY_CRV) == COSE_CRV_P256,
             "the ephemeral key is not an EC2 P-256 COSE_Key")
    x, y = cose_key.get(COSE_KEY_X), cose_key.get(COSE_KEY_Y)
    if not (isinstance(x, bytes) and isinstance(y, bytes) and len(x) == len(y) == 32):
        raise SchemaError("the ephemeral key's coordinates are not 32-byte strings")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
    except ValueError:
        raise SchemaError("the ephemeral key is not a point on P-256") from None


def _cose_key(public: ec.EllipticCurvePublicKey) -> dict[int, Any]:
    numbers = public.public_numbers()
    return {COSE_KEY_KTY: COSE_KTY_EC2, COSE_KEY_CRV: COSE_CRV_P256,
            COSE_KEY_X: numbers.x.to_bytes(32, "big"), COSE_KEY_Y: numbers.y.to_bytes(32, "big")}


def _kdf_kek(shared_secret: bytes, algorithm: int) -> bytes:
    """The A128KW key-encryption key: HKDF-SHA-256 (no salt) over the ECDH shared secret with
    the draft's COSE_KDF_Context: AlgorithmID A128KW, empty party infos, SuppPubInfo =
    [128, the serialized {alg: ECDH-ES+A128KW}, "SUIT Payload Encryption"]. The protected
    member is the algorithm map whether the recipient carries it protected or not, as the
    draft (section 5.2.4) and both its ES-DH examples have it."""
    context = cbor.dumps([ALG_A128KW, [None, None, None], [None, None, None],
                          [128, cbor.dumps({HEADER_ALG: algorithm}), KDF_OTHER]])
    return HKDF(hashes.SHA256(), 16, None, context).derive(shared_secret)


def _unwrap(kek: bytes, wrapped: bytes, key_length: int) -> bytes:
    try:
        cek = aes_key_unwrap(kek, wrapped)
    except InvalidUnwrap:
        raise KeyUnwrapError("the wrapped content key does not unwrap with this recipient's "
                             "key: it was tampered with or wrapped for another key") from None
    if len(cek) != key_length:
        raise KeyUnwrapError(f"the content key is {len(cek)} bytes; the content algorithm "
                             f"needs {key_length}")
    return cek


def _shown(kid: bytes | None) -> str:
    return kid.hex()[:16] if kid is not None else "(no key ID)"


def _recipient(info: EncryptionInfo, algorithm: int, kid: bytes | None) -> Recipient:
    """The recipient of `algorithm` whose key ID is `kid` (None: one that names no key)."""
    for recipient in info.recipients:
        if recipient.algorithm == algorithm and recipient.kid == kid:
            return recipient
    shown = ", ".join(f"{_shown(r.kid)} ({r.name})" for r in info.recipients)
    raise NotARecipientError(f"the payload is encrypted for {shown}, not for "
                             f"{KEY_ALGORITHMS[algorithm]} key {_shown(kid)}")


def unwrap_with_private_key(info: EncryptionInfo, key: ec.EllipticCurvePrivateKey,
                            kid: bytes | None) -> bytes:
    """The CEK of the ECDH-ES+A128KW recipient named `kid`, unwrapped with `key`."""
    recipient = _recipient(info, ALG_ECDH_ES_A128KW, kid)
    assert recipient.ephemeral is not None  # Recipient.from_cbor requires it
    shared = key.exchange(ec.ECDH(), _public_key(recipient.ephemeral))
    return _unwrap(_kdf_kek(shared, recipient.algorithm), recipient.wrapped_key,
                   info.key_length)


def unwrap_with_kek(info: EncryptionInfo, kek: bytes, kid: bytes | None) -> bytes:
    """The CEK of the A128KW recipient named `kid`, unwrapped with the pre-shared `kek`."""
    if len(kek) != 16:
        raise KeyUnwrapError("an A128KW key-encryption key is 16 bytes")
    return _unwrap(kek, _recipient(info, ALG_A128KW, kid).wrapped_key, info.key_length)


def kek_id(kek: bytes) -> bytes:
    """The key ID sfupdate gives a pre-shared A128KW key: 16 bytes of SHA-256 over a label and
    the key (a one-way name: it tells which key, never the key)."""
    return hashlib.sha256(b"sfupdate A128KW key id\0" + kek).digest()[:16]


# --- the sender's side -------------------------------------------------------------------------


def wrap_for_public_key(cek: bytes, public: ec.EllipticCurvePublicKey, kid: bytes) -> Recipient:
    """An ECDH-ES+A128KW recipient: a fresh ephemeral key agreed with `public`."""
    if not isinstance(public.curve, ec.SECP256R1):
        raise UnsupportedAlgorithmError("ECDH-ES recipients must be P-256 keys")
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    kek = _kdf_kek(ephemeral.exchange(ec.ECDH(), public), ALG_ECDH_ES_A128KW)
    protected = cbor.dumps({HEADER_ALG: ALG_ECDH_ES_A128KW})
    return Recipient(ALG_ECDH_ES_A128KW, kid, aes_key_wrap(kek, cek), protected,
                     _cose_key(ephemeral.public_key()))


def wrap_for_kek(cek: bytes, kek: bytes, kid: bytes) -> Recipient:
    """An A128KW recipient (empty protected header, as the draft has it)."""
    if len(kek) != 16:
        raise UnsupportedAlgorithmError("an A128KW key-encryption key is 16 bytes")
    return Recipient(ALG_A128KW, kid, aes_key_wrap(kek, cek))


def new_info(algorithm: int, cek: bytes, recipients: Sequence[Recipient]) -> EncryptionInfo:
    """The SUIT_Encryption_Info for a fresh random IV. AEAD algorithms are named in the
    protected header (bound by the tag); CTR ones in the unprotected header, with an empty
    protected one, as the draft requires for ciphers without AAD."""
    name, key_length, aead = CONTENT_ALGORITHMS[algorithm]
    if len(cek) != key_length:
        raise ValueError(f"{name} needs a {key_length}-byte key")
    protected = cbor.dumps({HEADER_ALG: algorithm}) if aead else b""
    iv = os.urandom(GCM_IV if aead else CTR_IV)
    return EncryptionInfo(algorithm, iv, tuple(recipients), protected)


# --- content encryption, streaming -------------------------------------------------------------


def _enc_structure(protected: bytes) -> bytes:
    """RFC 9052 section 5.3 with an empty external AAD (the draft: h'')."""
    return cbor.dumps(["Encrypt", protected, b""])


class ContentCipher:
    """Decrypts one payload chunk by chunk. For GCM the last 16 bytes (the tag) are held back
    and checked by `finish()`; nothing else is buffered."""

    def __init__(self, info: EncryptionInfo, cek: bytes) -> None:
        self._tail = b""
        self._gcm: AEADDecryptionContext | None = None
        self._ctx: CipherContext
        if info.aead:
            self._gcm = Cipher(algorithms.AES(cek), modes.GCM(info.iv)).decryptor()
            self._gcm.authenticate_additional_data(_enc_structure(info.protected))
            self._ctx = self._gcm
        else:
            self._ctx = Cipher(algorithms.AES(cek), modes.CTR(info.iv)).decryptor()

    def update(self, chunk: bytes) -> bytes:
        if self._gcm is None:
            return self._ctx.update(chunk)
        data = self._tail + chunk
        cut = max(0, len(data) - GCM_TAG)
        self._tail = data[cut:]
        return self._ctx.update(data[:cut])

    def finish(self) -> bytes:
        """The last plaintext bytes; raises CiphertextTagError if the GCM tag does not verify."""
        if self._gcm is None:
            return self._ctx.finalize()
        if len(self._tail) != GCM_TAG:
            raise CiphertextTagError("the ciphertext is shorter than its authentication tag")
        try:
            return self._gcm.finalize_with_tag(self._tail)
        except InvalidTag:
            raise CiphertextTagError("the ciphertext's authentication tag does not verify: "
                                     "the encrypted payload was tampered with") from None


class ContentEncryptor:
    """Encrypts one payload chunk by chunk; `finish()` returns the GCM tag (empty for CTR)."""

    def __init__(self, info: EncryptionInfo, cek: bytes) -> None:
        self._gcm: AEADEncryptionContext | None = None
        self._ctx: CipherContext
        if info.aead:
            self._gcm = Cipher(algorithms.AES(cek), modes.GCM(info.iv)).encryptor()
            self._gcm.authenticate_additional_data(_enc_structure(info.protected))
            self._ctx = self._gcm
        else:
            self._ctx = Cipher(algorithms.AES(cek), modes.CTR(info.iv)).encryptor()

    def update(self, chunk: bytes | memoryview) -> bytes:
        return self._ctx.update(chunk)

    def finish(self) -> bytes:
        tail = self._ctx.finalize()
        return tail + (self._gcm.tag if self._gcm is not None else b"")

"""Keys held in a PKCS#11 token (an HSM, a smart card, SoftHSM2), named by RFC 7512 URIs.

The private key never leaves the token: `HsmSigner` asks the token to sign. P-256 keys sign
with CKM_ECDSA over a SHA-256 digest computed here (every token that does ECDSA supports it,
unlike CKM_ECDSA_SHA256), which gives the raw r||s COSE wants; Ed25519 keys with CKM_EDDSA
(PKCS#11 3.0; SoftHSM2 2.6 has it). python-pkcs11 is the `hsm` extra, imported only here
and only when a `pkcs11:` key is used.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Final

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from sfupdate.errors import HsmError
from sfupdate.formats.sfui.cose import AlgorithmStyle, PublicKey, algorithm_for, key_id, verify_raw
from sfupdate.keys.unlock import Unlock
from sfupdate.keys.uri import Pkcs11Uri

if TYPE_CHECKING:
    from pkcs11 import Session, Token

#: CKA_EC_PARAMS of the curves sfupdate signs with: the DER OID of P-256, and of Ed25519 as
#: an OID or as the PrintableString "edwards25519" (PKCS#11 3.0 allows both).
_P256_PARAMS: Final = bytes.fromhex("06082a8648ce3d030107")
_ED25519_PARAMS: Final = (bytes.fromhex("06032b6570"), b"\x13\x0cedwards25519")
#: Logged-in sessions, one per token and module: a token allows one login per process.
_SESSIONS: dict[tuple[str, str, bytes], Session] = {}


def _pkcs11() -> Any:
    try:
        import pkcs11
    except ImportError:
        raise HsmError("a pkcs11: key needs python-pkcs11: pip install 'sfupdate[hsm]'") from None
    return pkcs11


def _token(uri: Pkcs11Uri, unlock: Unlock) -> Token:
    pkcs11 = _pkcs11()
    module = unlock.module(uri.module_path)
    try:
        lib = pkcs11.lib(module)
        tokens = list(lib.get_tokens(token_label=uri.token,
                                     token_serial=uri.serial.encode() if uri.serial else None))
    except pkcs11.PKCS11Error as exc:
        raise HsmError(f"PKCS#11 module {module}: {exc or type(exc).__name__}") from None
    if not tokens:
        raise HsmError(f"{uri.text}: no token {uri.token_name} in {module}")
    if len(tokens) > 1:
        raise HsmError(f"{uri.text}: {len(tokens)} tokens match; name one with token= or "
                       "serial=")
    token: Token = tokens[0]
    return token


def _session(uri: Pkcs11Uri, unlock: Unlock) -> Session:
    """A logged-in session on the URI's token (reused: one login per token and process)."""
    pkcs11 = _pkcs11()
    token = _token(uri, unlock)
    cache = (unlock.module(uri.module_path), token.label, token.serial)
    if cache not in _SESSIONS:
        pin = unlock.pin(uri.pin_source, token.label)
        try:
            _SESSIONS[cache] = token.open(user_pin=pin)
        except (pkcs11.PinIncorrect, pkcs11.PinInvalid, pkcs11.PinLenRange):
            raise HsmError(f"wrong PIN for token {token.label}") from None
        except pkcs11.PKCS11Error as exc:
            raise HsmError(f"cannot log in to token {token.label}: "
                           f"{exc or type(exc).__name__}") from None
    return _SESSIONS[cache]


def _find(session: Session, uri: Pkcs11Uri, kind: str) -> Any:
    pkcs11 = _pkcs11()
    object_class = (pkcs11.ObjectClass.PRIVATE_KEY if kind == "private"
                    else pkcs11.ObjectClass.PUBLIC_KEY)
    try:
        return session.get_key(object_class=object_class, label=uri.object, id=uri.id)
    except pkcs11.NoSuchKey:
        raise HsmError(f"{uri.text}: no {kind} key with that label/id in token "
                       f"{uri.token_name}") from None
    except pkcs11.MultipleObjectsReturned:
        raise HsmError(f"{uri.text}: several {kind} keys match; add id= to the URI") from None


def _unwrap_octets(value: bytes, size: int) -> bytes:
    """A CKA_EC_POINT, DER OCTET STRING-wrapped (the standard) or raw (some tokens)."""
    if len(value) == size + 2 and value[0] == 0x04 and value[1] == size:
        return value[2:]
    return value


def _public_key(key: Any, uri: Pkcs11Uri) -> PublicKey:
    """The cryptography public key of a token public key object."""
    pkcs11 = _pkcs11()
    try:
        params, point = bytes(key[pkcs11.Attribute.EC_PARAMS]), bytes(
            key[pkcs11.Attribute.EC_POINT])
    except pkcs11.PKCS11Error:
        raise HsmError(f"{uri.text}: not an EC key (need P-256 or Ed25519)") from None
    try:
        if params == _P256_PARAMS:
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(),
                                                                _unwrap_octets(point, 65))
        if params in _ED25519_PARAMS:
            return ed25519.Ed25519PublicKey.from_public_bytes(_unwrap_octets(point, 32))
    except ValueError as exc:
        raise HsmError(f"{uri.text}: malformed public key in the token ({exc})") from None
    raise HsmError(f"{uri.text}: unsupported curve (need P-256 or Ed25519)")


def token_public_key(uri: Pkcs11Uri, unlock: Unlock) -> PublicKey:
    """The public half of the key pair a URI names (read from its public key object)."""
    return _public_key(_find(_session(uri, unlock), uri, "public"), uri)


class HsmSigner:
    """Signs with a private key that stays in a PKCS#11 token, declaring the COSE algorithm
    ID of `style` (the same interface as keys.FileSigner)."""

    def __init__(self, uri: Pkcs11Uri, unlock: Unlock,
                 style: AlgorithmStyle = AlgorithmStyle.FULLY_SPECIFIED) -> None:
        session = _session(uri, unlock)
        self.uri = uri
        self._private = _find(session, uri, "private")
        self.public_key: PublicKey = _public_key(_find(session, uri, "public"), uri)
        self._style = style

    @property
    def algorithm(self) -> int:
        return algorithm_for(self.public_key, self._style)

    @property
    def kid(self) -> bytes:
        return key_id(self.public_key)

    def sign(self, data: bytes) -> bytes:
        pkcs11 = _pkcs11()
        try:
            if isinstance(self.public_key, ec.EllipticCurvePublicKey):
                signature = self._private.sign(hashlib.sha256(data).digest(),
                                               mechanism=pkcs11.Mechanism.ECDSA)
            else:
                signature = self._private.sign(data, mechanism=pkcs11.Mechanism.EDDSA)
        except pkcs11.PKCS11Error as exc:
            raise HsmError(f"{self.uri.text}: the token refused to sign "
                           f"({exc or type(exc).__name__})") from None
        if not verify_raw(self.public_key, bytes(signature), data):  # a mismatched key pair
            raise HsmError(f"{self.uri.text}: the token's signature does not verify with the "
                           "public key object of that label/id")
        return bytes(signature)

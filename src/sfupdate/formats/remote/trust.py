"""Signed trust updates: new trust anchors and a threshold for one or more roles.

A trust update is a COSE_Sign (RFC 9052, several signatures, attached payload: cose_sign.py)
over a deterministic CBOR map:

    {0: "sfu-trust-update",          / type: never mistaken for a command or a policy /
     1: 1,                           / format version /
     2: {1: h'<UEID>'} or {2: h'<vendor-id>', 3: h'<class-id>'},   / target, as commands /
     3: V,                           / trust store version: strictly above the device's /
     4: [{"role": "firmware", "threshold": k, "keys": [h'<SPKI DER>', ...]}, ...]}

Each entry REPLACES its role's anchors and threshold (the anchors it omits are revoked, for
good); roles it does not name stay as they are. The device applies it only when, for every
role whose anchors or threshold change, at least the CURRENT threshold of that role's current
anchors signed (docs/keys.md). Like TUF's root rotation, where the old root's threshold signs
the new root, each role's trust is re-rooted in the keys that hold it now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from sfupdate.errors import SchemaError, UnsupportedError
from sfupdate.formats.remote.commands import Target
from sfupdate.formats.schema import (
    ANY,
    MAP,
    UINT,
    Field,
    Kind,
    Schema,
    blob,
    integer,
    list_of,
    one_of,
    record,
)
from sfupdate.formats.sfui import cbor
from sfupdate.formats.sfui.cose import Signer, TrustedKey
from sfupdate.formats.sfui.cose_sign import SignedObject, sign

UPDATE_TYPE: Final = "sfu-trust-update"
FORMAT_VERSION: Final = 1
ROLES: Final = ("firmware", "operator", "recovery")
#: Anchors one role may be given at most (and so the highest threshold).
MAX_ROLE_KEYS: Final = 16
MAX_SPKI: Final = 512
MAX_UPDATE_SIZE: Final = 64 * 1024


@dataclass(frozen=True)
class RoleKeys:
    """A role's new anchors (SubjectPublicKeyInfo DER) and its threshold k of n."""

    role: str
    threshold: int
    keys: tuple[bytes, ...]

    def check(self) -> None:
        """SchemaError unless 1 <= k <= n, the keys are distinct and each is a P-256 or
        Ed25519 public key."""
        if not 1 <= self.threshold <= len(self.keys):
            raise SchemaError(f"role {self.role}: a threshold of {self.threshold} with "
                              f"{len(self.keys)} keys can never be met (1 <= k <= n)")
        if len(set(self.keys)) != len(self.keys):
            raise SchemaError(f"role {self.role}: a key is listed twice")
        for spki in self.keys:
            public_key(spki)


def public_key(spki: bytes) -> TrustedKey:
    """A trust anchor's key from its SPKI DER (SchemaError if it is none we verify with)."""
    try:
        key = serialization.load_der_public_key(spki)
    except (ValueError, UnsupportedAlgorithm):  # an unknown key type's OID
        raise SchemaError("a trust update key is not a DER SubjectPublicKeyInfo") from None
    if isinstance(key, ed25519.Ed25519PublicKey) or (
            isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)):
        return TrustedKey(key)
    raise SchemaError("a trust update key is neither P-256 nor Ed25519")


_ROLE: Final = Schema("trust update role", Field("role", one_of(*ROLES)),
                      Field("threshold", integer(1, MAX_ROLE_KEYS)),
                      Field("keys", list_of(blob(1, MAX_SPKI), MAX_ROLE_KEYS, min_items=1)))


def _role(**fields: Any) -> RoleKeys:
    return RoleKeys(fields["role"], fields["threshold"], tuple(fields["keys"]))


@dataclass(frozen=True)
class TrustUpdate:
    target: Target
    version: int
    roles: tuple[RoleKeys, ...]

    def check(self) -> None:
        names = [r.role for r in self.roles]
        if not names:
            raise SchemaError("a trust update names no role")
        if len(set(names)) != len(names):
            raise SchemaError("a trust update names a role twice")
        for role in self.roles:
            role.check()

    def encode(self) -> bytes:
        self.check()
        return cbor.dumps(_UPDATE.dump({**vars(self), "type": UPDATE_TYPE,
                                        "version_format": FORMAT_VERSION}))

    @classmethod
    def decode(cls, data: bytes) -> TrustUpdate:
        obj = cbor.loads(data, "trust update")
        if not isinstance(obj, dict) or obj.get(0) != UPDATE_TYPE:
            raise SchemaError("not an sfupdate trust update")
        fields = _UPDATE.load(obj, SchemaError)
        del fields["type"]
        if fields.pop("version_format") != FORMAT_VERSION:
            raise UnsupportedError(f"trust update format {obj.get(1)!r}")
        update = cls(fields["target"], fields["version"], tuple(fields["roles"]))
        update.check()
        return update


_UPDATE: Final = Schema(
    "trust update", Field(0, one_of(UPDATE_TYPE), name="type"),
    Field(1, ANY, name="version_format"),
    Field(2, Kind("a target", MAP.accepts, Target.from_cbor, Target.to_cbor), name="target"),
    Field(3, UINT, name="version"),
    Field(4, list_of(record(_ROLE, _role), len(ROLES), min_items=1), name="roles"))


def sign_trust_update(update: TrustUpdate, signers: Sequence[Signer]) -> bytes:
    """The update signed by every signer (each a distinct key: ValueError otherwise)."""
    if len({s.kid for s in signers}) != len(signers):
        raise ValueError("the same key is given twice: a threshold counts distinct keys")
    return sign(update.encode(), signers)


def open_trust_update(data: bytes) -> tuple[SignedObject, TrustUpdate]:
    """The signed object and the update it carries, WITHOUT checking any signature (to add
    a signature, or to show what one would sign)."""
    signed = SignedObject.decode(data, "trust update", MAX_UPDATE_SIZE)
    return signed, TrustUpdate.decode(signed.payload)


def verify_trust_update(data: bytes, trusted: Sequence[TrustedKey]
                        ) -> tuple[TrustUpdate, tuple[TrustedKey, ...]]:
    """The update and the distinct `trusted` keys whose signatures verify (at least one,
    else the first signature's error). Whether they are enough is the device's decision."""
    signed = SignedObject.decode(data, "trust update", MAX_UPDATE_SIZE)
    keys = signed.verified_keys(trusted)
    return TrustUpdate.decode(signed.payload), keys


__all__ = ["ROLES", "RoleKeys", "TrustUpdate", "open_trust_update", "public_key",
           "sign_trust_update", "verify_trust_update"]

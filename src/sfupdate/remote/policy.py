"""Signed integrity policies: further regions the agent re-measures, and what to do when one
no longer matches.

A policy is a COSE_Sign1 (RFC 9052, attached payload) from an `operator` trust anchor over a
deterministic CBOR map:

    {0: "sfu-integrity-policy",     / type: a signed command can never pass for a policy /
     1: 1,                          / format version /
     2: {1: h'<UEID>'} or {2: h'<vendor-id>', 3: h'<class-id>'},   / target, as commands /
     3: N,                          / policy sequence number: strictly increasing per device /
     4: [region, ...]}              / at most MAX_REGIONS /

    region = {"name": "boot-config", "sha256": h'<32 bytes>', "on-mismatch": "report",
              "file": "/etc/boot.cfg"}                      / a file on the board, or: /
           | {"name": "slot-head", "sha256": h'...', "on-mismatch": "revert",
              "slot": "running", "offset": 0, "length": 4096}   / a byte range of a slot /

`slot` is "running" (whichever slot the last boot started) or "A"/"B". `on-mismatch` is
`report` (log and report) or `revert` (also go back to the confirmed image at the next boot
when that is safe; see docs/after-attack.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sfupdate.errors import LimitExceededError, SchemaError, UnsupportedError
from sfupdate.remote.commands import Target
from sfupdate.sfui import cbor
from sfupdate.sfui.cose import Sign1, Signer, TrustedKey, sign1

POLICY_TYPE: Final = "sfu-integrity-policy"
FORMAT_VERSION: Final = 1
KEY_TYPE, KEY_VERSION, KEY_TARGET, KEY_SEQUENCE, KEY_REGIONS = 0, 1, 2, 3, 4
MAX_POLICY_SIZE: Final = 32 * 1024
MAX_REGIONS: Final = 32
MAX_PATH: Final = 1024
MAX_RANGE: Final = 1 << 40
ON_MISMATCH: Final = ("report", "revert")
SLOT_CHOICES: Final = ("running", "A", "B")
_NAME: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Region:
    """One region to re-measure: a file (`path`) or a byte range of a slot."""

    name: str
    sha256: bytes
    on_mismatch: str = "report"
    path: str | None = None
    slot: str | None = None
    offset: int = 0
    length: int = 0

    def check(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise SchemaError(f"region name {self.name!r} must be 1-64 of a-z 0-9 . _ - ")
        if len(self.sha256) != 32:
            raise SchemaError(f"region {self.name}: sha256 must be 32 bytes")
        if self.on_mismatch not in ON_MISMATCH:
            raise SchemaError(f"region {self.name}: on-mismatch must be one of {ON_MISMATCH}")
        if (self.path is None) == (self.slot is None):
            raise SchemaError(f"region {self.name}: name a file or a slot range, not both")
        if self.path is not None:
            if not self.path.startswith("/") or len(self.path) > MAX_PATH or "\0" in self.path:
                raise SchemaError(f"region {self.name}: the file must be an absolute path")
        elif (self.slot not in SLOT_CHOICES or not 0 < self.length <= MAX_RANGE
              or not 0 <= self.offset <= MAX_RANGE):
            raise SchemaError(f"region {self.name}: slot must be one of {SLOT_CHOICES} with "
                              "an offset and a non-zero length")

    def to_cbor(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"name": self.name, "sha256": self.sha256,
                               "on-mismatch": self.on_mismatch}
        if self.path is not None:
            obj["file"] = self.path
        else:
            obj.update({"slot": self.slot, "offset": self.offset, "length": self.length})
        return obj

    @classmethod
    def from_cbor(cls, obj: Any) -> Region:
        if not isinstance(obj, dict):
            raise SchemaError("a policy region is not a map")
        common = {"name", "sha256", "on-mismatch"}
        if set(obj) == common | {"file"}:
            region = cls(_typed(obj, "name", str), _typed(obj, "sha256", bytes),
                         _typed(obj, "on-mismatch", str), path=_typed(obj, "file", str))
        elif set(obj) == common | {"slot", "offset", "length"}:
            region = cls(_typed(obj, "name", str), _typed(obj, "sha256", bytes),
                         _typed(obj, "on-mismatch", str), slot=_typed(obj, "slot", str),
                         offset=_typed(obj, "offset", int), length=_typed(obj, "length", int))
        else:
            raise SchemaError("a policy region has missing or unknown members")
        region.check()
        return region


def _typed(obj: dict[str, Any], key: str, kind: type) -> Any:
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SchemaError(f"policy region member {key!r} must be {kind.__name__}")
    return value


@dataclass(frozen=True)
class IntegrityPolicy:
    target: Target
    sequence: int
    regions: tuple[Region, ...]

    def encode(self) -> bytes:
        if len(self.regions) > MAX_REGIONS:
            raise LimitExceededError(f"a policy holds at most {MAX_REGIONS} regions")
        names = [r.name for r in self.regions]
        if len(set(names)) != len(names):
            raise SchemaError("policy region names must be unique")
        for region in self.regions:
            region.check()
        return cbor.dumps({KEY_TYPE: POLICY_TYPE, KEY_VERSION: FORMAT_VERSION,
                           KEY_TARGET: self.target.to_cbor(), KEY_SEQUENCE: self.sequence,
                           KEY_REGIONS: [r.to_cbor() for r in self.regions]})

    @classmethod
    def decode(cls, data: bytes) -> IntegrityPolicy:
        obj = cbor.loads(data, "integrity policy")
        if not isinstance(obj, dict) or obj.get(KEY_TYPE) != POLICY_TYPE:
            raise SchemaError("not an sfupdate integrity policy")
        if set(obj) != {KEY_TYPE, KEY_VERSION, KEY_TARGET, KEY_SEQUENCE, KEY_REGIONS}:
            raise SchemaError("integrity policy has missing or unknown members")
        if obj[KEY_VERSION] != FORMAT_VERSION:
            raise UnsupportedError(f"integrity policy format {obj[KEY_VERSION]!r}")
        sequence, regions = obj[KEY_SEQUENCE], obj[KEY_REGIONS]
        if (not isinstance(sequence, int) or isinstance(sequence, bool)
                or not 0 <= sequence < 1 << 64):
            raise SchemaError("policy sequence number must be an unsigned integer")
        if not isinstance(regions, list):
            raise SchemaError("policy regions must be an array")
        if len(regions) > MAX_REGIONS:
            raise LimitExceededError(f"a policy holds at most {MAX_REGIONS} regions")
        parsed = tuple(Region.from_cbor(r) for r in regions)
        if len({r.name for r in parsed}) != len(parsed):
            raise SchemaError("policy region names must be unique")
        return cls(Target.from_cbor(obj[KEY_TARGET]), sequence, parsed)


def sign_policy(policy: IntegrityPolicy, signer: Signer) -> bytes:
    return sign1(policy.encode(), signer, detached=False)


def verify_policy(data: bytes, operators: Sequence[TrustedKey]) -> tuple[IntegrityPolicy,
                                                                          TrustedKey, bytes]:
    """Check the operator's signature, then decode. Returns the policy, the signer and the
    signed body (what the device stores). Target and replay are the device's checks."""
    if len(data) > MAX_POLICY_SIZE:
        raise LimitExceededError(f"integrity policy larger than {MAX_POLICY_SIZE} bytes")
    envelope = Sign1.decode(data)
    if envelope.payload is None:
        raise SchemaError("integrity policy has no payload")
    signer = envelope.verify(envelope.payload, operators)
    return IntegrityPolicy.decode(envelope.payload), signer, envelope.payload


__all__ = ["IntegrityPolicy", "Region", "sign_policy", "verify_policy"]

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
              "slot": "running", "offset": 0, "length": 4096,   / a byte range of a slot /
              "component": "app"}        / optional: of that component (default: the first) /

`slot` is "running" (whichever slot the last boot started) or "A"/"B"; on a board of several
components, `component` names whose slot (absent: the board's first component). `on-mismatch` is
`report` (log and report) or `revert` (also go back to the confirmed image at the next boot
when that is safe; see docs/after-attack.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sfupdate.errors import LimitExceededError, SchemaError, UnsupportedError
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
    text,
)
from sfupdate.formats.sfui import cbor
from sfupdate.formats.sfui.components import COMPONENT_NAME
from sfupdate.formats.sfui.cose import Signer, TrustedKey, open_attached, sign1

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


_COMMON: Final = (Field("name", text(pattern=_NAME)), Field("sha256", blob(32, 32)),
                  Field("on-mismatch", one_of(*ON_MISMATCH), name="on_mismatch"))
#: A region is a file on the board, or a byte range of a slot: one schema each.
_FILE_REGION: Final = Schema("policy region", *_COMMON,
                             Field("file", text(MAX_PATH, re.compile(r"/[^\0]*")), name="path"))
_SLOT_REGION: Final = Schema("policy region", *_COMMON,
                             Field("slot", one_of(*SLOT_CHOICES)),
                             Field("offset", integer(0, MAX_RANGE)),
                             Field("length", integer(1, MAX_RANGE)),
                             Field("component", text(pattern=COMPONENT_NAME), optional=True))


@dataclass(frozen=True)
class Region:
    """One region to re-measure: a file (`path`) or a byte range of a slot (of `component`,
    or of the board's first component if None)."""

    name: str
    sha256: bytes
    on_mismatch: str = "report"
    path: str | None = None
    slot: str | None = None
    offset: int = 0
    length: int = 0
    component: str | None = None

    def check(self) -> None:
        """SchemaError unless the region is one its format can carry."""
        if (self.path is None) == (self.slot is None):
            raise SchemaError(f"region {self.name}: name a file or a slot range, not both")
        if self.path is not None and self.component is not None:
            raise SchemaError(f"region {self.name}: a component has slot ranges, not files")
        self.from_cbor(self.to_cbor())

    def to_cbor(self) -> dict[str, Any]:
        return (_FILE_REGION if self.path is not None else _SLOT_REGION).dump(self)

    @classmethod
    def from_cbor(cls, obj: Any) -> Region:
        schema = _FILE_REGION if isinstance(obj, dict) and "file" in obj else _SLOT_REGION
        return cls(**schema.load(obj, SchemaError))


@dataclass(frozen=True)
class IntegrityPolicy:
    target: Target
    sequence: int
    regions: tuple[Region, ...]

    def encode(self) -> bytes:
        _check_regions(self.regions)
        for region in self.regions:
            region.check()
        return cbor.dumps(_POLICY.dump({**vars(self), "type": POLICY_TYPE,
                                        "version": FORMAT_VERSION}))

    @classmethod
    def decode(cls, data: bytes) -> IntegrityPolicy:
        obj = cbor.loads(data, "integrity policy")
        if not isinstance(obj, dict) or obj.get(KEY_TYPE) != POLICY_TYPE:
            raise SchemaError("not an sfupdate integrity policy")
        regions = obj.get(KEY_REGIONS)
        if isinstance(regions, list):
            _check_regions(regions)
        fields = _POLICY.load(obj, SchemaError)
        del fields["type"]
        version = fields.pop("version")
        if version != FORMAT_VERSION:
            raise UnsupportedError(f"integrity policy format {version!r}")
        _check_regions(fields["regions"])
        return cls(**fields)


_POLICY: Final = Schema(
    "integrity policy", Field(KEY_TYPE, one_of(POLICY_TYPE), name="type"),
    Field(KEY_VERSION, ANY, name="version"),
    Field(KEY_TARGET, Kind("a target", MAP.accepts, Target.from_cbor, Target.to_cbor),
          name="target"),
    Field(KEY_SEQUENCE, UINT, name="sequence"),
    Field(KEY_REGIONS, list_of(Kind("a region", MAP.accepts, Region.from_cbor,
                                    Region.to_cbor)), name="regions"))


def _check_regions(regions: Sequence[Any]) -> None:
    """At most MAX_REGIONS regions (LimitExceededError, judged before any is parsed), with
    unique names."""
    if len(regions) > MAX_REGIONS:
        raise LimitExceededError(f"a policy holds at most {MAX_REGIONS} regions")
    names = [r.name for r in regions if isinstance(r, Region)]
    if len(set(names)) != len(names):
        raise SchemaError("policy region names must be unique")


def sign_policy(policy: IntegrityPolicy, signer: Signer) -> bytes:
    return sign1(policy.encode(), signer, detached=False)


def verify_policy(data: bytes, operators: Sequence[TrustedKey]) -> tuple[IntegrityPolicy,
                                                                          TrustedKey, bytes]:
    """Check the operator's signature, then decode. Returns the policy, the signer and the
    signed body (what the device stores). Target and replay are the device's checks."""
    envelope, payload = open_attached(data, "integrity policy", MAX_POLICY_SIZE,
                                      LimitExceededError)
    signer = envelope.verify(payload, operators)
    return IntegrityPolicy.decode(payload), signer, payload


__all__ = ["IntegrityPolicy", "Region", "sign_policy", "verify_policy"]

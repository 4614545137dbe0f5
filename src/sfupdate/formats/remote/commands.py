"""Signed remote commands: what an operator may tell a device to do after an attack.

A command is a COSE_Sign1 (RFC 9052) whose attached payload is a deterministic CBOR map:

    {1: 1,                      / format version /
     2: {1: h'<UEID>'} or {2: h'<vendor-id>', 3: h'<class-id>'},   / target /
     3: N,                      / command number: strictly increasing per device /
     4: "revert",               / action /
     5: {...},                  / arguments (action-specific) /
     6: T,                      / optional expiry, seconds since the epoch /
     7: T}                      / optional issue time, seconds since the epoch /

The signature must come from a trust anchor with the role `operator`, separate from firmware
signing. The device refuses a number not above the last one it accepted (replay), a target
that is not itself, an expired command, and anything malformed. The issue time, being signed,
raises the device's time floor (docs/after-attack.md): no later expiry is judged by a clock
below it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sfupdate.errors import SchemaError, UnsupportedError
from sfupdate.formats.schema import ANY, MAP, UINT, UUID, Field, Kind, Schema, blob, nullable, text
from sfupdate.formats.sfui import cbor
from sfupdate.formats.sfui.cose import Signer, TrustedKey, open_attached, sign1

FORMAT_VERSION: Final = 1
KEY_VERSION, KEY_TARGET, KEY_NUMBER, KEY_ACTION, KEY_ARGS, KEY_EXPIRES = 1, 2, 3, 4, 5, 6
KEY_ISSUED: Final = 7
TARGET_UEID, TARGET_VENDOR, TARGET_CLASS = 1, 2, 3
MAX_COMMAND_SIZE: Final = 16 * 1024

#: action -> {argument name: required python type}
ACTIONS: Final[Mapping[str, Mapping[str, type]]] = {
    "inspect": {"nonce": bytes},
    "revert": {},
    "quarantine": {"recovery_key_id": bytes},
    "release": {},
    "revoke-key": {"key_id": bytes},
    "reboot": {},
    "acknowledge": {"through": int},
}
_KINDS: Final[Mapping[type, Kind]] = {bytes: blob(), int: UINT}
#: action -> the schema of its arguments map
_ARGUMENTS: Final = {action: Schema(f"arguments of {action!r}",
                                    *(Field(name, _KINDS[kind]) for name, kind in spec.items()))
                     for action, spec in ACTIONS.items()}
_UEID_TARGET: Final = Schema("command target", Field(TARGET_UEID, blob(), name="ueid"))
_CLASS_TARGET: Final = Schema("command target", Field(TARGET_VENDOR, UUID, name="vendor_id"),
                              Field(TARGET_CLASS, UUID, name="class_id"))


@dataclass(frozen=True)
class Target:
    """One device (by UEID) or a whole class (vendor-id + class-id)."""

    ueid: bytes | None = None
    vendor_id: uuid.UUID | None = None
    class_id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        ids = (self.vendor_id, self.class_id)
        by_ueid = self.ueid is not None and ids == (None, None)
        by_class = self.ueid is None and None not in ids
        if not (by_ueid or by_class):
            raise TypeError("a target is a device UEID, or a vendor-id and a class-id")

    def to_cbor(self) -> dict[int, bytes]:
        return (_UEID_TARGET if self.ueid is not None else _CLASS_TARGET).dump(self)

    @classmethod
    def from_cbor(cls, obj: Any) -> Target:
        """{1: ueid} or {2: vendor-id, 3: class-id}."""
        schema = _UEID_TARGET if isinstance(obj, dict) and TARGET_UEID in obj else _CLASS_TARGET
        return cls(**schema.load(obj, SchemaError))

    def matches(self, ueid: bytes, vendor_id: uuid.UUID, class_id: uuid.UUID) -> bool:
        if self.ueid is not None:
            return self.ueid == ueid
        return (self.vendor_id, self.class_id) == (vendor_id, class_id)


@dataclass(frozen=True)
class RemoteCommand:
    target: Target
    number: int
    action: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    expires: int | None = None
    issued: int | None = None

    def encode(self) -> bytes:
        return cbor.dumps(_COMMAND.dump({**vars(self), "version": FORMAT_VERSION,
                                         "arguments": _arguments(self.action, self.arguments)}))

    @classmethod
    def decode(cls, data: bytes) -> RemoteCommand:
        fields = _COMMAND.load(cbor.loads(data, "remote command"), SchemaError)
        version = fields.pop("version")
        if version != FORMAT_VERSION:
            raise UnsupportedError(f"remote command format {version!r}")
        fields["arguments"] = _arguments(fields["action"], fields["arguments"])
        return cls(**fields)


_COMMAND: Final = Schema(
    "remote command", Field(KEY_VERSION, ANY, name="version"),
    Field(KEY_TARGET, Kind("a target", MAP.accepts, Target.from_cbor, Target.to_cbor),
          name="target"),
    Field(KEY_NUMBER, UINT, name="number"), Field(KEY_ACTION, text(), name="action"),
    Field(KEY_ARGS, MAP, name="arguments"),
    Field(KEY_EXPIRES, nullable(UINT), name="expires", optional=True),
    Field(KEY_ISSUED, nullable(UINT), name="issued", optional=True))


def _arguments(action: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments `action` takes, checked (UnsupportedError for an unknown action)."""
    schema = _ARGUMENTS.get(action)
    if schema is None:
        raise UnsupportedError(f"unknown remote action {action!r}")
    return schema.load(dict(arguments), SchemaError)


def sign_command(command: RemoteCommand, signer: Signer) -> bytes:
    """A tagged COSE_Sign1 carrying the command as its (attached) payload."""
    return sign1(command.encode(), signer, detached=False)


def read_command(data: bytes) -> RemoteCommand:
    """The command inside a signed command, WITHOUT checking its signature: for the operator's
    side, which holds a command it signed and wants to match a device's answer to it."""
    _, payload = open_attached(data, "remote command", MAX_COMMAND_SIZE)
    return RemoteCommand.decode(payload)


def verify_command(data: bytes, operators: Sequence[TrustedKey]) -> tuple[RemoteCommand,
                                                                            TrustedKey]:
    """Check the operator's signature, then decode. Replay, target and expiry are the
    device's checks (it knows its identity, its last command number and the time)."""
    envelope, payload = open_attached(data, "remote command", MAX_COMMAND_SIZE)
    signer = envelope.verify(payload, operators)
    return RemoteCommand.decode(payload), signer


__all__ = ["ACTIONS", "RemoteCommand", "Target", "read_command", "sign_command",
           "verify_command"]

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
from sfupdate.sfui import cbor
from sfupdate.sfui.cose import Sign1, Signer, TrustedKey, sign1

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


@dataclass(frozen=True)
class Target:
    """One device (by UEID) or a whole class (vendor-id + class-id)."""

    ueid: bytes | None = None
    vendor_id: uuid.UUID | None = None
    class_id: uuid.UUID | None = None

    def to_cbor(self) -> dict[int, bytes]:
        if self.ueid is not None:
            return {TARGET_UEID: self.ueid}
        if self.vendor_id is None or self.class_id is None:
            raise SchemaError("a target needs a device UEID or both vendor-id and class-id")
        return {TARGET_VENDOR: self.vendor_id.bytes, TARGET_CLASS: self.class_id.bytes}

    @classmethod
    def from_cbor(cls, obj: Any) -> Target:
        if not isinstance(obj, dict):
            raise SchemaError("command target is not a map")
        if set(obj) == {TARGET_UEID} and isinstance(obj[TARGET_UEID], bytes):
            return cls(ueid=obj[TARGET_UEID])
        if (set(obj) == {TARGET_VENDOR, TARGET_CLASS}
                and all(isinstance(v, bytes) and len(v) == 16 for v in obj.values())):
            return cls(vendor_id=uuid.UUID(bytes=obj[TARGET_VENDOR]),
                       class_id=uuid.UUID(bytes=obj[TARGET_CLASS]))
        raise SchemaError("command target must be {1: ueid} or {2: vendor-id, 3: class-id}")

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
        _check_action(self.action, self.arguments)
        obj: dict[int, Any] = {KEY_VERSION: FORMAT_VERSION, KEY_TARGET: self.target.to_cbor(),
                               KEY_NUMBER: self.number, KEY_ACTION: self.action,
                               KEY_ARGS: dict(self.arguments)}
        if self.expires is not None:
            obj[KEY_EXPIRES] = self.expires
        if self.issued is not None:
            obj[KEY_ISSUED] = self.issued
        return cbor.dumps(obj)

    @classmethod
    def decode(cls, data: bytes) -> RemoteCommand:
        obj = cbor.loads(data, "remote command")
        if not isinstance(obj, dict):
            raise SchemaError("remote command is not a map")
        allowed = {KEY_VERSION, KEY_TARGET, KEY_NUMBER, KEY_ACTION, KEY_ARGS, KEY_EXPIRES,
                   KEY_ISSUED}
        if set(obj) - allowed or not {KEY_VERSION, KEY_TARGET, KEY_NUMBER, KEY_ACTION,
                                       KEY_ARGS} <= set(obj):
            raise SchemaError("remote command has missing or unknown members")
        if obj[KEY_VERSION] != FORMAT_VERSION:
            raise UnsupportedError(f"remote command format {obj[KEY_VERSION]!r}")
        number, action, args = obj[KEY_NUMBER], obj[KEY_ACTION], obj[KEY_ARGS]
        expires, issued = obj.get(KEY_EXPIRES), obj.get(KEY_ISSUED)
        if not _uint(number) or any(t is not None and not _uint(t) for t in (expires, issued)):
            raise SchemaError("command number, expiry and issue time must be unsigned "
                              "integers")
        if not isinstance(action, str) or not isinstance(args, dict):
            raise SchemaError("command action must be text and its arguments a map")
        _check_action(action, args)
        return cls(Target.from_cbor(obj[KEY_TARGET]), number, action, args, expires, issued)


def _uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 64


def _check_action(action: str, arguments: Mapping[str, Any]) -> None:
    spec = ACTIONS.get(action)
    if spec is None:
        raise UnsupportedError(f"unknown remote action {action!r}")
    if set(arguments) != set(spec):
        raise SchemaError(f"action {action!r} takes arguments {sorted(spec)}, "
                          f"got {sorted(map(str, arguments))}")
    for name, kind in spec.items():
        value = arguments[name]
        if not isinstance(value, kind) or (kind is int and not _uint(value)):
            raise SchemaError(f"argument {name!r} of {action!r} must be {kind.__name__}")


def sign_command(command: RemoteCommand, signer: Signer) -> bytes:
    """A tagged COSE_Sign1 carrying the command as its (attached) payload."""
    return sign1(command.encode(), signer, detached=False)


def read_command(data: bytes) -> RemoteCommand:
    """The command inside a signed command, WITHOUT checking its signature: for the operator's
    side, which holds a command it signed and wants to match a device's answer to it."""
    if len(data) > MAX_COMMAND_SIZE:
        raise SchemaError(f"remote command larger than {MAX_COMMAND_SIZE} bytes")
    envelope = Sign1.decode(data)
    if envelope.payload is None:
        raise SchemaError("remote command has no payload")
    return RemoteCommand.decode(envelope.payload)


def verify_command(data: bytes, operators: Sequence[TrustedKey]) -> tuple[RemoteCommand,
                                                                            TrustedKey]:
    """Check the operator's signature, then decode. Replay, target and expiry are the
    device's checks (it knows its identity, its last command number and the time)."""
    if len(data) > MAX_COMMAND_SIZE:
        raise SchemaError(f"remote command larger than {MAX_COMMAND_SIZE} bytes")
    envelope = Sign1.decode(data)
    if envelope.payload is None:
        raise SchemaError("remote command has no payload")
    signer = envelope.verify(envelope.payload, operators)
    return RemoteCommand.decode(envelope.payload), signer


__all__ = ["ACTIONS", "RemoteCommand", "Target", "read_command", "sign_command",
           "verify_command"]

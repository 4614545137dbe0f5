"""A remote command from the operator's words: whom it targets (one device by its identity
key, or a device class by vendor and class names), the action and exactly the arguments that
action takes (docs/after-attack.md)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

from sfupdate import keys
from sfupdate.errors import UsageError
from sfupdate.formats.remote import ACTIONS, RemoteCommand, Target, ueid_for
from sfupdate.formats.sfui import class_uuid, vendor_uuid

_HEX_KID: Final = re.compile(r"[0-9a-fA-F]{64}")

#: Each argument of an action and the `sfu remote sign` option that gives it (for messages).
ARGUMENT_OPTIONS: Final = {"nonce": "--nonce", "recovery_key_id": "--recovery-key",
                           "key_id": "--revoke", "through": "--through"}


def target_for(device_key: Path | None, vendor: str | None, klass: str | None) -> Target:
    """One device (its identity public key file), or a device class (vendor and class, each
    a name or a UUID); exactly one of the two."""
    if device_key is not None:
        if vendor or klass:
            raise UsageError("give --device-key, or --vendor and --class, not both")
        return Target(ueid=ueid_for(keys.load_public_key(device_key).public_key))
    if not (vendor and klass):
        raise UsageError("name the target: --device-key DEVICE.pub, or --vendor V --class C")
    vendor_id = vendor_uuid(vendor)
    return Target(vendor_id=vendor_id, class_id=class_uuid(vendor_id, klass))


def key_id(value: str, option: str) -> bytes:
    """A key ID from a public key file, or given as 64 hex digits."""
    if _HEX_KID.fullmatch(value):
        return bytes.fromhex(value)
    if os.path.isfile(value):
        return keys.load_public_key(Path(value)).kid
    raise UsageError(f"{option} takes a public key file or a 64-digit hex key ID")


def compose_command(target: Target, number: int, action: str, *, now: int,
                    expires_in: int | None = None, nonce: bytes | None = None,
                    recovery_key: str | None = None, revoke: str | None = None,
                    through: int | None = None) -> RemoteCommand:
    """The command `number` doing `action` on `target`, issued at `now` (seconds since the
    epoch) and expiring `expires_in` seconds later if given. Each argument must be one the
    action takes, and every one it takes must be given, except an inspect's nonce (16 random
    bytes then). `recovery_key` and `revoke` name a key: a public key file or a hex key ID."""
    if action not in ACTIONS:
        raise UsageError(f"unknown action {action!r} (one of: {', '.join(sorted(ACTIONS))})")
    given: dict[str, bytes | str | int | None] = {
        "nonce": nonce, "recovery_key_id": recovery_key, "key_id": revoke, "through": through}
    arguments: dict[str, bytes | int] = {}
    for name, value in given.items():
        if value is None:
            continue
        if name not in ACTIONS[action]:
            raise UsageError(f"{ARGUMENT_OPTIONS[name]} does not apply to {action}")
        arguments[name] = key_id(value, ARGUMENT_OPTIONS[name]) if isinstance(value, str) \
            else value
    if action == "inspect" and "nonce" not in arguments:
        arguments["nonce"] = os.urandom(16)
    missing = set(ACTIONS[action]) - set(arguments)
    if missing:
        raise UsageError(f"{action} needs "
                         + ", ".join(ARGUMENT_OPTIONS[m] for m in sorted(missing)))
    expires = now + expires_in if expires_in else None
    return RemoteCommand(target, number, action, arguments, expires, issued=now)

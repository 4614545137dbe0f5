"""Vendor and class identifiers: RFC 4122 version-5 UUIDs derived from names.

As draft-ietf-suit-manifest does in its examples, the vendor ID is UUIDv5(DNS namespace,
vendor domain name) and the class ID is UUIDv5(vendor ID, model name).
"""

from __future__ import annotations

import uuid
from typing import Final

from sfupdate.errors import UsageError


def vendor_uuid(name_or_uuid: str) -> uuid.UUID:
    """A vendor ID from a UUID string, or from a vendor name (e.g. a domain like "arm.com")."""
    parsed = _maybe_uuid(name_or_uuid)
    return parsed if parsed is not None else uuid.uuid5(uuid.NAMESPACE_DNS, _name(name_or_uuid))


def class_uuid(vendor_id: uuid.UUID | None, name_or_uuid: str) -> uuid.UUID:
    """A class ID from a UUID string, or from a model name within the vendor's namespace.
    `vendor_id` is None when the vendor has no UUID (a PEN): then only a UUID is accepted."""
    parsed = _maybe_uuid(name_or_uuid)
    if parsed is not None:
        return parsed
    if vendor_id is None:
        raise UsageError(f"class {name_or_uuid!r}: a class name is derived from a UUID vendor "
                         "ID, and this vendor has none; give the class as a UUID")
    return uuid.uuid5(vendor_id, _name(name_or_uuid))


def _name(value: str) -> str:
    if not value:
        raise UsageError("a vendor or class name must not be empty")
    return value


def _maybe_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


#: The agent bundle's vendor and class: what both the author's tools (which build bundles) and
#: the boot ROM and the agent (which verify them) call an agent bundle.
AGENT_VENDOR: Final = vendor_uuid("sfupdate.dev")
AGENT_CLASS: Final = class_uuid(AGENT_VENDOR, "sfu-agent")

"""Vendor and class identifiers: RFC 4122 version-5 UUIDs derived from names.

As draft-ietf-suit-manifest does in its examples, the vendor ID is UUIDv5(DNS namespace,
vendor domain name) and the class ID is UUIDv5(vendor ID, model name). `check_identity` is the
one vendor-and-class check: the agent's install, the kernel's records and slot verification,
signed remote commands, and `sfu verify --vendor --class` all use it.
"""

from __future__ import annotations

import uuid
from typing import Final, Protocol

from sfupdate.errors import UsageError, WrongClassError, WrongVendorError


class Identified(Protocol):
    """Anything naming a vendor and a device class: a manifest's ImageInfo, a recorded image,
    the target of a signed command."""

    @property
    def vendor_id(self) -> uuid.UUID | None: ...

    @property
    def class_id(self) -> uuid.UUID | None: ...


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


def check_identity(found: Identified, vendor_id: uuid.UUID | None, class_id: uuid.UUID | None,
                   subject: str = "image") -> None:
    """`found` must name exactly `vendor_id` and `class_id`: a manifest naming none is refused
    (it would fit any device). `subject` says what `found` is, in the error."""
    if found.vendor_id != vendor_id:
        raise WrongVendorError.mismatch(subject, found.vendor_id, vendor_id)
    if found.class_id != class_id:
        raise WrongClassError.mismatch(subject, found.class_id, class_id)


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

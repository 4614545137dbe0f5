"""The agent's install checks on the envelope itself (not to be confused with the signed
integrity policy of sfupdate.formats.remote.policy), as pure functions of what the signed manifest
says and what the device is. No I/O: the install pipeline calls these between
authentication and the first write. What depends on the secure state (signer, anti-rollback)
is `sfupdate.secure.kernel.SecureState.check_install`.
"""

from __future__ import annotations

import uuid

from sfupdate.errors import (
    MissingMemberError,
    PayloadTooLongError,
    PayloadTooShortError,
    SchemaError,
    WrongClassError,
    WrongVendorError,
)
from sfupdate.formats.sfui import ImageInfo, PayloadRef


def check_identity(info: ImageInfo, vendor_id: uuid.UUID, class_id: uuid.UUID) -> None:
    """The image must name this device's vendor and class (a manifest naming none is refused:
    it would fit any device)."""
    if info.vendor_id != vendor_id:
        raise WrongVendorError.mismatch("image", info.vendor_id, vendor_id)
    if info.class_id != class_id:
        raise WrongClassError.mismatch("image", info.class_id, class_id)


def check_payload(info: ImageInfo, payload: PayloadRef | None) -> None:
    """The envelope's integrated payload must be the one the signed manifest installs, with
    exactly the signed image size. The reader checks this again when it streams the payload;
    checking here refuses a lying envelope before the install slot is touched."""
    if payload is None:
        raise MissingMemberError("the SFUI has no integrated payload")
    if info.payload_uri != payload.key:
        raise SchemaError(f"integrated payload '{payload.key}' is not the one the manifest "
                          f"installs ({info.payload_uri!r})")
    if info.image_size is not None and payload.length > info.image_size:
        raise PayloadTooLongError(f"payload is {payload.length} bytes but the manifest "
                                  f"declares {info.image_size}")
    if info.image_size is not None and payload.length < info.image_size:
        raise PayloadTooShortError(f"payload is {payload.length} bytes but the manifest "
                                   f"declares {info.image_size}")

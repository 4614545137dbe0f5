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
    TooLargeError,
    WrongClassError,
    WrongVendorError,
)
from sfupdate.formats.sfui import ImageInfo, PayloadRef
from sfupdate.formats.sfui.encoding import PayloadEncoding, encoded_bound


def check_identity(info: ImageInfo, vendor_id: uuid.UUID, class_id: uuid.UUID) -> None:
    """The image must name this device's vendor and class (a manifest naming none is refused:
    it would fit any device)."""
    if info.vendor_id != vendor_id:
        raise WrongVendorError.mismatch("image", info.vendor_id, vendor_id)
    if info.class_id != class_id:
        raise WrongClassError.mismatch("image", info.class_id, class_id)


def check_size(info: ImageInfo, slot_size: int) -> int:
    """The declared image size must fit the slot; returns it."""
    if info.image_size is None:
        raise MissingMemberError("manifest declares no image-size")
    if info.image_size > slot_size:
        raise TooLargeError(f"image of {info.image_size} bytes does not fit the "
                            f"{slot_size}-byte slot")
    return info.image_size


def check_payload(info: ImageInfo, payload: PayloadRef | None,
                  encoding: PayloadEncoding | None = None) -> None:
    """The envelope's integrated payload must be the one the signed manifest installs, with
    exactly the signed image size (an encoded one: at most what an encoding of that size may
    take). The reader checks this again when it streams the payload; checking here refuses a
    lying envelope before the install slot is touched."""
    if payload is None:
        raise MissingMemberError("the SFUI has no integrated payload")
    if info.payload_uri != payload.key:
        raise SchemaError(f"integrated payload '{payload.key}' is not the one the manifest "
                          f"installs ({info.payload_uri!r})")
    if encoding is not None and info.image_size is not None:
        if payload.length > encoded_bound(info.image_size):
            raise PayloadTooLongError(f"the {encoding.describe()} payload is {payload.length} "
                                      f"bytes, more than an encoding of {info.image_size} "
                                      "bytes may take")
        return
    if info.image_size is not None and payload.length > info.image_size:
        raise PayloadTooLongError(f"payload is {payload.length} bytes but the manifest "
                                  f"declares {info.image_size}")
    if info.image_size is not None and payload.length < info.image_size:
        raise PayloadTooShortError(f"payload is {payload.length} bytes but the manifest "
                                   f"declares {info.image_size}")

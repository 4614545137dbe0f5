"""The agent's install checks on the envelope itself (not to be confused with the signed
integrity policy of sfupdate.formats.remote.policy), as pure functions of what the signed manifest
says and what the device is. No I/O: the install pipeline calls these between
authentication and the first write. What depends on the secure state (signer, anti-rollback)
is `sfupdate.secure.kernel.SecureState.check_install`. The vendor-and-class check is the one
`sfu verify` and the kernel use too: `sfupdate.formats.sfui.check_identity`.
"""

from __future__ import annotations

from sfupdate.errors import (
    MissingMemberError,
    PayloadTooLongError,
    PayloadTooShortError,
    SchemaError,
)
from sfupdate.formats.sfui import ImageInfo, PayloadRef
from sfupdate.formats.sfui.uuids import check_identity

__all__ = ["check_identity", "check_payload"]


def check_payload(info: ImageInfo, payload: PayloadRef | None, overhead: int = 0) -> None:
    """The envelope's integrated payload must be the one the signed manifest installs, with
    exactly the signed image size (plus `overhead`, an encrypted payload's tag). The reader
    checks this again when it streams the payload; checking here refuses a lying envelope
    before the install slot is touched."""
    if payload is None:
        raise MissingMemberError("the SFUI has no integrated payload")
    if info.payload_uri != payload.key:
        raise SchemaError(f"integrated payload '{payload.key}' is not the one the manifest "
                          f"installs ({info.payload_uri!r})")
    expected = None if info.image_size is None else info.image_size + overhead
    if expected is not None and payload.length > expected:
        raise PayloadTooLongError(f"payload is {payload.length} bytes but the manifest "
                                  f"declares {expected}")
    if expected is not None and payload.length < expected:
        raise PayloadTooShortError(f"payload is {payload.length} bytes but the manifest "
                                   f"declares {expected}")

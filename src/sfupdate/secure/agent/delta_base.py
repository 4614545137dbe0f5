"""The base image of a delta update: the running, confirmed slot, and only when the facts
secure storage recorded for it name exactly the image the signed manifest says the delta
applies to (its digest and size). The slot's stored header and bytes decide nothing here: the
rebuilt image is hashed against the signed digest before the trial is recorded, so a base
slot tampered with yields a refused install, never a wrong image."""

from __future__ import annotations

import hmac
from contextlib import AbstractContextManager, nullcontext

from sfupdate.errors import DeltaBaseError
from sfupdate.formats.sfui import Verified
from sfupdate.formats.sfui.encoding import Delta
from sfupdate.secure.board.hal import Board
from sfupdate.secure.board.slotio import SlotImageReader
from sfupdate.secure.kernel import SecureState


def delta_base(board: Board, state: SecureState,
               verified: Verified) -> AbstractContextManager[SlotImageReader | None]:
    """A reader of the base image for a delta (None for any other payload); raises
    DeltaBaseError naming the base the delta needs when the device does not run it. Call it
    before the install slot is touched: a refusal changes nothing."""
    delta = verified.encoding
    if not isinstance(delta, Delta):
        return nullcontext()
    slot = state.boot.confirmed  # an install needs the running slot to be the confirmed one
    image = state.boot.slot(slot).image
    if image is None or image.size != delta.base_size or not hmac.compare_digest(
            image.digest, delta.base_digest):
        running = (f"sha256:{image.digest.hex()} ({image.size} bytes)" if image is not None
                   else "no recorded image")
        raise DeltaBaseError(f"this delta applies only to base image "
                             f"sha256:{delta.base_digest.hex()} ({delta.base_size} bytes); "
                             f"the device runs {running} in slot {slot.value}: install the "
                             "full image")
    return board.slots.image_reader(slot, image.size)

"""An authenticated SFUI's components matched to the board's, as one set.

A slot side (A or B) holds one image of every board component. An install writes each
component the SFUI names into the inactive side and copies every other component's image
(with its stored SFUI header) from the confirmed side, so the side is a complete set; the
kernel then records the facts of all of them in the one write that records the trial. On a
board of one component the record is the plain `ImageRecord` it always was.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from sfupdate.errors import (
    DeviceStateError,
    IntegrityError,
    MissingMemberError,
    PayloadTooLongError,
    PayloadTooShortError,
    SchemaError,
    TooLargeError,
    UnknownComponentError,
)
from sfupdate.formats.sfui import Verified
from sfupdate.formats.sfui.components import Part, parts
from sfupdate.formats.sfui.encoding import encoded_bound
from sfupdate.formats.sfui.uuids import check_identity
from sfupdate.secure.board.hal import Board, Slot, Slots
from sfupdate.secure.board.records import ComponentRecord, DeviceInfo, ImageRecord


@dataclass(frozen=True)
class InstallPlan:
    """What an install of one SFUI writes: the slots of each component it names, the
    components it keeps (copied from the confirmed side), and the record of the whole set."""

    image: ImageRecord
    named: dict[str, Slots]
    kept: tuple[ComponentRecord, ...]


def plan_install(verified: Verified, board: Board, device: DeviceInfo,
                 confirmed: ImageRecord | None, signer: bytes) -> InstallPlan:
    """Check every component of the SFUI against the board and the device before a byte is
    written (a name the board has, vendor and class, a digest, a size that fits, an integrated
    payload) and plan the set. `confirmed` is the confirmed set the others are kept from
    (None at provisioning: then the SFUI must name every component of the board); `signer` is
    the key ID the set records as its signer (the secure state chose it among the keys whose
    signatures verified: SecureState.check_signers)."""
    found = parts(verified.manifest)
    named: dict[str, Slots] = {}
    records: dict[str, ComponentRecord] = {}
    for part in found:
        slots = board.components.get(part.name)
        if slots is None:
            raise UnknownComponentError(f"this board has no component {part.name!r} (it has "
                                        f"{', '.join(board.components)})")
        records[part.name] = _component(part, slots.size, device, verified, signer)
        named[part.name] = slots
    _check_first_payload(found, verified)
    info = verified.info
    version = verified.text.component_version() if verified.text is not None else None
    if len(board.components) == 1:
        (only,) = records.values()
        image = ImageRecord(info.sequence_number, only.digest, only.size, only.signer,
                            device.vendor_id, device.class_id, version)
        return InstallPlan(image, named, ())
    kept = tuple(_kept(name, confirmed) for name in board.components if name not in named)
    every = [records[name] if name in records else next(k for k in kept if k.name == name)
             for name in board.components]
    image = ImageRecord.of_set(info.sequence_number, every, signer,
                               device.vendor_id, device.class_id, version)
    return InstallPlan(image, named, kept)


def _component(part: Part, room: int, device: DeviceInfo, verified: Verified,
               signer: bytes) -> ComponentRecord:
    what = f"component {part.name}"
    check_identity(part, device.vendor_id, device.class_id, what)
    if part.digest is None or part.size is None:
        raise MissingMemberError(f"{what} declares no image-digest or image-size")
    if part.size > room:
        raise TooLargeError(f"{what}: image of {part.size} bytes does not fit the {room}-byte "
                            "slot")
    if part.uri != f"#{part.name}":
        raise SchemaError(f"{what} is not installed from its integrated payload "
                          f"'#{part.name}' ({part.uri!r})")
    return ComponentRecord(part.name, verified.manifest.sequence_number, part.digest.value,
                           part.size, signer)


def _check_first_payload(found: tuple[Part, ...], verified: Verified) -> None:
    """The payload the envelope carries first must be one the manifest installs, of exactly
    its signed size (plus an encrypted payload's tag): a lying envelope is refused before a
    slot is touched (the reader checks the later ones as they arrive)."""
    ref = verified.payload
    if ref is None:
        raise MissingMemberError("the SFUI has no integrated payload")
    part = next((p for p in found if p.uri == ref.key), None)
    if part is None or part.size is None:
        raise SchemaError(f"integrated payload '{ref.key}' is not one the manifest installs")
    expected = part.size + verified.overhead
    if verified.encoding is not None:  # its length is bounded, the image it yields exact
        if ref.length > encoded_bound(part.size) + verified.overhead:
            raise PayloadTooLongError(f"the {verified.encoding.describe()} payload is "
                                      f"{ref.length} bytes, more than an encoding of "
                                      f"{part.size} bytes may take")
        return
    if ref.length > expected:
        raise PayloadTooLongError(f"payload is {ref.length} bytes but the manifest declares "
                                  f"{expected}")
    if ref.length < expected:
        raise PayloadTooShortError(f"payload is {ref.length} bytes but the manifest declares "
                                   f"{expected}")


def _kept(name: str, confirmed: ImageRecord | None) -> ComponentRecord:
    for component in (confirmed.components or ()) if confirmed is not None else ():
        if component.name == name:
            return component
    raise DeviceStateError(f"the SFUI does not name component {name!r} and there is no "
                           "confirmed image of it to keep")


def keep(board: Board, component: ComponentRecord, source: Slot, target: Slot,
         chunk_size: int = 1 << 20) -> None:
    """Copy a kept component's image and its stored SFUI header from `source` (the confirmed
    side) to `target`, streamed; IntegrityError (the target then stays invalid) if the source
    bytes no longer match the facts recorded for them."""
    slots = board.components[component.name]
    header = slots.header(source)
    if header is None:
        raise IntegrityError(f"component {component.name} in slot {source.value} has no "
                             "stored SFUI header: it cannot be kept")
    hasher = hashlib.sha256()
    with slots.writer(target, header) as writer:
        for chunk in slots.read(source, component.size, chunk_size):
            hasher.update(chunk)
            writer.write(chunk)
        if not hmac.compare_digest(hasher.digest(), component.digest):
            raise IntegrityError(f"component {component.name} in slot {source.value} does not "
                                 "match its recorded digest: it cannot be kept")
        writer.finish()

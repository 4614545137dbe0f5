"""Boot control: the trial / confirm / revert state machine over the boot record.

`BootControl`'s methods are the only legal transitions. Each one is a read-modify-write of
the single `boot` record under the storage lock, and each ends in ONE atomic storage write, so a
power cut leaves either the old or the new state:

    begin_install()        target (non-confirmed) slot -> INVALID, any trial on it dropped
    record_trial(img)      INVALID target -> TRIAL with DEFAULT_TRIES (sequence above floor and
                           above the confirmed image, else DowngradeError)
    start_boot()           pick the slot to boot; a trial's tries are decremented BEFORE it boots;
                           a trial with no tries left is marked BAD (revert)
    confirm()              the booted trial -> CONFIRMED, the old one -> SUPERSEDED, and the
                           floor rises to the new sequence number (in the same atomic write)
    reject_trial()         trial -> BAD; the confirmed slot boots next
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from sfupdate.board.hal import SecureStorage, Slot
from sfupdate.board.records import (
    DEFAULT_TRIES,
    RECORD_BOOT,
    BootRecord,
    ImageRecord,
    SlotRecord,
    SlotStatus,
)
from sfupdate.errors import DeviceStateError, DowngradeError


class BootControl:
    """Holds the secure storage; `record` is re-read (and verified) by every transition."""

    def __init__(self, storage: SecureStorage) -> None:
        self._storage = storage

    @property
    def record(self) -> BootRecord:
        data = self._storage.read(RECORD_BOOT)
        if data is None:
            raise DeviceStateError("the board is not provisioned (no boot control record)")
        return BootRecord.decode(data)

    def _save(self, old: BootRecord, new: BootRecord,
              also: Mapping[str, bytes | None] | None = None) -> BootRecord:
        """Write the transition, and `also` (other records) in the SAME atomic write."""
        new.check()
        if new.floor < old.floor:  # defence in depth: no transition may lower the floor
            raise DeviceStateError("refusing to lower the rollback floor")
        changes = dict(also or {})
        if new != old:
            changes[RECORD_BOOT] = new.encode()
        if changes:
            self._storage.write(changes)
        return new

    @property
    def install_slot(self) -> Slot:
        """The slot an install writes: never the confirmed one."""
        return self.record.confirmed.other

    def minimum_sequence(self) -> int:
        """An install needs a sequence number strictly above this (floor and confirmed)."""
        record = self.record
        return max(record.floor, record.confirmed_image.sequence)

    def begin_install(self) -> Slot:
        """Mark the install slot INVALID before a byte of it is overwritten."""
        with self._storage.lock():
            old = self.record
            slot = old.confirmed.other
            new = replace(old.with_slot(slot, SlotRecord(SlotStatus.INVALID)),
                          trial=None, tries_left=0)
            self._save(old, new)
            return slot

    def record_trial(self, slot: Slot, image: ImageRecord, tries: int = DEFAULT_TRIES) -> None:
        """A complete, digest-checked image in `slot` becomes the trial."""
        if tries < 1:
            raise DeviceStateError("a trial needs at least one try")
        with self._storage.lock():
            old = self.record
            if slot is old.confirmed or old.slot(slot).status is not SlotStatus.INVALID:
                raise DeviceStateError(f"slot {slot.value} was not prepared for an install")
            minimum = max(old.floor, old.confirmed_image.sequence)
            if image.sequence <= minimum:
                raise DowngradeError(f"sequence number {image.sequence} is not above "
                                     f"{minimum} (rollback floor / confirmed image)")
            new = replace(old.with_slot(slot, SlotRecord(SlotStatus.TRIAL, image)),
                          trial=slot, tries_left=tries)
            self._save(old, new)

    def start_boot(self) -> tuple[Slot, bool]:
        """Choose the slot to boot, persisting the choice first. Returns (slot, is_trial)."""
        with self._storage.lock():
            old = self.record
            if old.trial is not None and old.tries_left > 0:
                new = replace(old, tries_left=old.tries_left - 1, booted=old.trial)
                self._save(old, new)
                return old.trial, True
            new = old
            if old.trial is not None:  # tries exhausted: revert
                new = _reject(old)
            new = replace(new, booted=old.confirmed)
            self._save(old, new)
            return old.confirmed, False

    def confirm(self) -> ImageRecord:
        """Make the running trial the confirmed image; raise the floor to its sequence."""
        with self._storage.lock():
            old = self.record
            if old.trial is None:
                raise DeviceStateError("there is no image on trial to confirm")
            if old.booted is not old.trial:
                raise DeviceStateError("the trial image has not been booted yet; reboot first")
            image = old.slot(old.trial).image
            assert image is not None
            previous = old.slot(old.confirmed)
            new = old.with_slot(old.trial, SlotRecord(SlotStatus.CONFIRMED, image))
            new = new.with_slot(old.confirmed, SlotRecord(SlotStatus.SUPERSEDED, previous.image))
            new = replace(new, confirmed=old.trial, trial=None, tries_left=0,
                          floor=max(old.floor, image.sequence))
            self._save(old, new)
            return image

    def reject_trial(self, also: Mapping[str, bytes | None] | None = None) -> None:
        """The trial failed (health check, refused by the agent, reverted by a signed
        command): mark it BAD. `also` are other records written in the same atomic write."""
        with self._storage.lock():
            old = self.record
            if old.trial is None:
                raise DeviceStateError("there is no image on trial to reject")
            self._save(old, _reject(old), also)

    def mark_bad(self, slot: Slot) -> None:
        """A slot failed verification at boot. The confirmed slot is never demoted here: the
        boot refuses to run it and halts instead (see sfupdate.boot)."""
        with self._storage.lock():
            old = self.record
            if old.trial is slot:
                self._save(old, _reject(old))


def _reject(record: BootRecord) -> BootRecord:
    assert record.trial is not None
    bad = SlotRecord(SlotStatus.BAD, record.slot(record.trial).image)
    return replace(record.with_slot(record.trial, bad), trial=None, tries_left=0)

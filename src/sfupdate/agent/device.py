"""The agent's access to the board's secure state, serialized between its threads.

Every read and transition of secure storage goes through `Device`, under one lock (the
storage's own lock also keeps other processes, like the boot code, out). Slot contents are
written outside the lock: only the single install session writes a slot.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sfupdate.agent import trust
from sfupdate.board.control import BootControl
from sfupdate.board.hal import Board, Slot
from sfupdate.board.records import RECORD_DEVICE, BootRecord, DeviceInfo, ImageRecord
from sfupdate.errors import DeviceStateError
from sfupdate.ipc.messages import AgentStatus, SlotStatus
from sfupdate.sfui import TrustedKey


def running_slot(record: BootRecord) -> Slot:
    """The slot the last boot started; the confirmed one before any boot."""
    return record.booted or record.confirmed


def running_sequence(record: BootRecord) -> int:
    image = record.slot(running_slot(record)).image
    return image.sequence if image is not None else record.confirmed_image.sequence


class Device:
    """Thread-safe facade over the board's secure storage and boot control."""

    def __init__(self, board: Board) -> None:
        self.board = board
        self._lock = threading.Lock()

    @contextmanager
    def _locked(self) -> Iterator[BootControl]:
        with self._lock, self.board.storage.lock():
            yield BootControl(self.board.storage)

    def info(self) -> DeviceInfo:
        with self._locked():
            return self._info()

    def _info(self) -> DeviceInfo:
        raw = self.board.storage.read(RECORD_DEVICE)
        if raw is None:
            raise DeviceStateError("the board has no device record: it is not provisioned")
        return DeviceInfo.decode(raw)

    def firmware_keys(self) -> list[TrustedKey]:
        with self._locked():
            return trust.firmware_keys(self.board.storage)

    def boot_record(self) -> BootRecord:
        with self._locked() as control:
            return control.record

    def begin_install(self) -> Slot:
        with self._locked() as control:
            return control.begin_install()

    def record_trial(self, slot: Slot, image: ImageRecord) -> None:
        with self._locked() as control:
            control.record_trial(slot, image)

    def confirm(self) -> None:
        with self._locked() as control:
            control.confirm()

    def reject_trial(self) -> None:
        with self._locked() as control:
            control.reject_trial()

    def status(self) -> AgentStatus:
        with self._locked() as control:
            info, record = self._info(), control.record
        slots = {}
        for slot in Slot:
            entry = record.slot(slot)
            image = entry.image
            slots[slot.value] = SlotStatus(entry.status.value,
                                           image.sequence if image else None,
                                           image.digest.hex() if image else None)
        return AgentStatus(
            vendor_id=str(info.vendor_id),
            class_id=str(info.class_id),
            running_slot=running_slot(record).value,
            running_sequence=running_sequence(record),
            rollback_floor=record.floor,
            trial_slot=record.trial.value if record.trial else None,
            trial_tries_left=record.tries_left if record.trial else None,
            slots=slots,
        )

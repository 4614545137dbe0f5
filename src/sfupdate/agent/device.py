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
from sfupdate.agent.measure import slot_signer
from sfupdate.board.control import BootControl
from sfupdate.board.hal import Board, SecureStorage, Slot
from sfupdate.board.records import (
    RECORD_DEVICE,
    RECORD_EVENTS,
    RECORD_POLICY,
    RECORD_REMOTE,
    BootRecord,
    DeviceInfo,
    EventLog,
    ImageRecord,
    PolicyRecord,
    RemoteState,
    Role,
)
from sfupdate.errors import DeviceStateError, QuarantinedError
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

    @contextmanager
    def transaction(self) -> Iterator[BootControl]:
        """Exclusive access to secure storage for a read-modify-write: the agent's threads and
        other processes (the boot code) are kept out until it ends."""
        with self._locked() as control:
            yield control

    def info(self) -> DeviceInfo:
        with self._locked():
            return self._info()

    def _info(self) -> DeviceInfo:
        return device_info(self.board.storage)

    def install_keys(self) -> tuple[list[TrustedKey], bytes | None]:
        """The keys an install may be signed with, and the quarantine key ID if the device is
        quarantined (then only that recovery anchor, however many firmware anchors exist)."""
        with self._locked():
            storage = self.board.storage
            quarantine = remote_state(storage).quarantine
            if quarantine is None:
                return trust.firmware_keys(storage), None
            anchor = trust.load_trust_store(storage).active(Role.RECOVERY, quarantine)
            if anchor is None:  # only a provisioned recovery anchor can be named; fail closed
                raise QuarantinedError("the device is quarantined and its recovery key is not "
                                       "an active recovery anchor")
            return [anchor.key], quarantine

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
        """Confirm the booted trial. While quarantined, only a trial signed by the recovery
        key may be confirmed (an image installed before the quarantine just runs out)."""
        with self._locked() as control:
            storage = self.board.storage
            quarantine = remote_state(storage).quarantine
            trial = control.record.trial
            if quarantine is not None and trial is not None:
                keys = trust.load_trust_store(storage).boot_keys()
                if slot_signer(self.board, trial, keys) != quarantine:
                    raise QuarantinedError(f"the device is quarantined: the trial in slot "
                                           f"{trial.value} is not signed by recovery key "
                                           f"{quarantine.hex()[:16]}")
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


def device_info(storage: SecureStorage) -> DeviceInfo:
    raw = storage.read(RECORD_DEVICE)
    if raw is None:
        raise DeviceStateError("the board has no device record: it is not provisioned")
    return DeviceInfo.decode(raw)


def remote_state(storage: SecureStorage) -> RemoteState:
    raw = storage.read(RECORD_REMOTE)
    return RemoteState() if raw is None else RemoteState.decode(raw)


def event_log(storage: SecureStorage) -> EventLog:
    raw = storage.read(RECORD_EVENTS)
    return EventLog() if raw is None else EventLog.decode(raw)


def policy_record(storage: SecureStorage) -> PolicyRecord | None:
    raw = storage.read(RECORD_POLICY)
    return None if raw is None else PolicyRecord.decode(raw)

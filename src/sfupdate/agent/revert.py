"""When a revert is safe: the one rule shared by the signed `revert` command and integrity
policies whose regions say `on-mismatch: revert`.

A revert goes back to the confirmed image. It is possible only while the device runs a trial
(the booted slot is the trial slot) AND the confirmed slot still verifies now (its signed
header with the firmware/recovery anchors, the boot record, its bytes against the signed
digest) AND that image is at or above the rollback floor. Then the trial is marked bad and
the next boot runs the confirmed image. When the running image IS the confirmed one there is
nothing to revert to: every other image the device ever confirmed is below the floor
(`superseded`), a failed trial is `bad`, and a trial not yet booted is newer, not older. So the
revert is refused with the reason, and the device keeps running what it runs: a refusal never
leaves it without a bootable authentic image.
"""

from __future__ import annotations

from collections.abc import Sequence

from sfupdate.agent.device import running_slot
from sfupdate.agent.measure import measure_slot
from sfupdate.board.hal import Board
from sfupdate.board.records import BootRecord, DeviceInfo, SlotStatus
from sfupdate.errors import DeviceStateError
from sfupdate.sfui import TrustedKey


def check_revert(board: Board, record: BootRecord, keys: Sequence[TrustedKey],
                 device: DeviceInfo) -> str:
    """Raise DeviceStateError unless a revert is safe now; else describe what it will do."""
    running = running_slot(record)
    if record.slot(running).status is SlotStatus.BAD:
        raise DeviceStateError(f"slot {running.value} is already marked bad: the next boot "
                               f"runs confirmed slot {record.confirmed.value}")
    if record.trial is None or record.booted is not record.trial:
        image = record.slot(running).image
        sequence = image.sequence if image else "?"
        raise DeviceStateError(
            f"slot {running.value} runs the confirmed image (sequence {sequence}); no other "
            f"authentic image at or above the rollback floor {record.floor} exists to revert "
            "to: install a fixed image instead")
    confirmed, image = record.confirmed, record.confirmed_image
    if image.sequence < record.floor:  # BootRecord's invariants exclude it; fail closed anyway
        raise DeviceStateError(f"the confirmed image (sequence {image.sequence}) is below the "
                               f"rollback floor {record.floor}")
    found = measure_slot(board, confirmed, image, keys, device, record.floor)
    if not found.ok:
        raise DeviceStateError(f"the confirmed image fails verification ({found.detail}); "
                               "refusing to revert onto it")
    trial = record.slot(record.trial).image
    return (f"trial slot {record.trial.value} (sequence {trial.sequence if trial else '?'}) "
            f"marked bad; the next boot runs confirmed slot {confirmed.value} "
            f"(sequence {image.sequence})")

"""Second stage: runs from the verified agent bundle. Selects a slot, verifies it against its
signed manifest, measures it, "runs" it (the health-check hook) and reverts a failing trial.

Selection: the trial slot while it has tries (decremented and persisted BEFORE it runs), else
the confirmed slot. The slot is verified against the facts secure storage recorded for it
(its signer, sequence, digest, size). A trial that fails verification or its health check is
marked bad and the confirmed slot boots in the same boot; a trial that passes is recorded as
healthy (only then may it be confirmed) together with its measurements, in one write. A
confirmed slot that fails verification is never run: the boot halts with that error (an image
below the floor is never a fallback). A boot that runs an agent bundle on trial and gets this
far confirms that bundle (it is this stage 2's own code). Every transition goes through
`sfupdate.secure.kernel`.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import sfupdate
from sfupdate.errors import DeviceStateError, SfuError
from sfupdate.secure.board.hal import LIFECYCLE_PROVISIONED, Board, Fuse
from sfupdate.secure.kernel import Kernel
from sfupdate.secure.kernel.verify import verify_slot


@dataclass
class BootResult:
    """What booted. `events` tells the story (trial tries, reverts) in plain words."""

    slot: str
    trial: bool
    sequence: int
    version: str | None
    healthy: bool
    pcr: str = ""
    events: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BootResult:
        return cls(**json.loads(text))


def boot_firmware(board: Board) -> BootResult:
    """Select, verify, measure and run a slot; revert a failing trial."""
    if board.fuses.read(Fuse.LIFECYCLE) != LIFECYCLE_PROVISIONED:
        raise DeviceStateError("the board is not provisioned")
    kernel = Kernel(board.storage)
    events: list[str] = []
    while True:
        before = kernel.state().boot.trial
        state, slot, trial = kernel.start_boot()
        if before is not None and not trial and before is not slot:
            events.append(f"trial slot {before.value} ran out of tries; reverted")
        image = state.boot.slot(slot).image
        if image is None:  # BootRecord.check() makes this unreachable for a stored record
            raise RuntimeError(f"slot {slot.value} has no image record")
        try:
            check = verify_slot(board, slot, image, state.signer_keys(image), state.device,
                                state.boot.floor)
        except SfuError as exc:
            if not trial:
                raise type(exc)(f"refusing to boot confirmed slot {slot.value}: {exc}") from None
            events.append(f"trial slot {slot.value} failed verification ({exc}); marked bad")
            kernel.trial_failed(slot)
            continue
        after = kernel.booted(slot, check.manifest_digest, check.healthy)
        if trial:
            events.append(f"trial slot {slot.value} booted, {state.boot.tries_left} tries left")
        if not check.healthy and trial:
            events.append(f"trial slot {slot.value} failed its health check; reverted")
            continue
        if after.agent.trial is not None and after.agent.tried:
            before_agent = after.agent
            after = kernel.confirm_agent()
            if after.agent.active is not before_agent.active:
                events.append(f"agent bundle {after.agent.active_bundle.sequence} in partition "
                              f"{after.agent.active.value} confirmed itself")
        return BootResult(slot.value, trial, image.sequence, image.version, check.healthy,
                          after.measured.pcr.hex(), events)


def _running_from_bundle() -> bool:
    bundle = os.path.abspath(sys.argv[0])
    return os.path.abspath(sfupdate.__file__).startswith(bundle + os.sep)


def main(argv: list[str] | None = None) -> int:
    """`python -I agent.pyz boot BOARD_DIR`: print the BootResult as JSON, or the error as
    JSON {"error": its wire code (SfuError.code), "message": ...} with the error's exit
    code."""
    from sfupdate.secure.board.sim import open_board  # the backend is a runtime choice

    args = sys.argv[1:] if argv is None else argv
    try:
        if len(args) != 2 or args[0] != "boot":
            raise DeviceStateError("usage: agent.pyz boot BOARD_DIR")
        if not _running_from_bundle():
            raise DeviceStateError("stage 2 is not running from the verified agent bundle")
        result = boot_firmware(open_board(Path(args[1])))
    except SfuError as exc:
        print(json.dumps({"error": exc.code, "message": str(exc)}))
        return exc.exit_code
    print(result.to_json())
    return 0

"""Confirming a trial, only while its slot still holds the image recorded for it.

The boot verified the trial before running it, but the slots are the Rich OS's to write: it
could change the trial's bytes between that boot and the confirm that raises the rollback
floor to it. So the confirm measures the slot again (kernel.verify.verify_slot: the recorded
signer's header, the signed digest of every byte) and, if it no longer verifies, marks the
trial bad instead of confirming it. The agent's `confirm` and `sfu board confirm` both come
here; the transition itself is the kernel's `confirm`.
"""

from __future__ import annotations

from sfupdate.errors import IntegrityError
from sfupdate.secure.agent.measure import measure_slot
from sfupdate.secure.board.hal import Board
from sfupdate.secure.kernel import Kernel, SecureState


def confirm_intact(board: Board, kernel: Kernel) -> SecureState:
    """The state after confirming the running trial. The kernel's refusals (no trial, not
    booted healthy, quarantine, a dropped signer) come first and change nothing; then
    IntegrityError, with the trial marked bad, if its slot no longer holds the recorded
    image."""
    state = kernel.state()
    state.confirm()  # the kernel's own refusals first (pure: nothing is written)
    trial = state.boot.trial
    assert trial is not None  # confirm() refuses without one
    found = measure_slot(board, trial, state)
    if not found.ok:
        kernel.reject_trial()
        raise IntegrityError(f"not confirmed: {found.detail}; the trial is marked bad and "
                             f"slot {state.boot.confirmed.value} runs at the next boot")
    return kernel.confirm()

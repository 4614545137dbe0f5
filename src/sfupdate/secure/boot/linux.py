"""The boot code's part on a Linux device, run after the fact by the mark-good unit.

On the sim, stage 2 chooses the slot. On a Linux device the bootloader already did (from the
mirrored BOOT_ORDER / BOOT_x_LEFT, spending a try of the trial itself), so here the kernel is
told what happened, through the same transitions stage 2 uses:

1. `start_boot()` persists the kernel's own choice (and spends the kernel's try). If the
   bootloader fell back to the confirmed slot while the kernel still had a trial with tries
   (the trial did not come up, or its count ran out in the environment), the trial is marked
   bad. If the bootloader runs a slot the kernel would not boot, that is refused. If the
   environment never listed the trial (the mirror after the commit was lost to a power cut),
   nothing is recorded: the environment is re-mirrored and a reboot is asked for.
   Each boot starts a new measured boot (the agent bundle's digest, as the sim's ROM does):
   without it the measurements of every boot since provisioning would pile up.
2. The running slot is verified against its recorded facts (stored header, signature,
   sequence, digest of the slot's bytes) and the health command runs; `booted()` records the
   measurements and the trial's health in one write.
3. A healthy trial is confirmed (the floor rises) when `confirm` is asked; an unhealthy one is
   bad. Either way the bootloader's environment is re-mirrored.

It runs once per boot: the boot ID it handled (/proc/sys/kernel/random/boot_id) is kept in
`state_dir/reconciled-boot`. That file is not secure state: tampering with it can only make
the step run again (spending one more of a trial's tries) or not at all (the trial then
cannot be confirmed).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sfupdate.errors import DeviceStateError, SfuError
from sfupdate.secure.board.hal import Slot
from sfupdate.secure.board.linux.board import LinuxBoard
from sfupdate.secure.kernel import Kernel, SecureState
from sfupdate.secure.kernel.verify import verify_slot

BOOT_ID: Final = Path("/proc/sys/kernel/random/boot_id")
HEALTH_TIMEOUT: Final = 600.0


@dataclass
class Reconciled:
    slot: str
    trial: bool
    healthy: bool
    confirmed: bool
    events: list[str] = field(default_factory=list)


def running_slot(cmdline: str) -> Slot:
    """The slot the bootloader booted, from `sfu.slot=A|B` on the kernel command line."""
    for arg in cmdline.split():
        if arg.startswith("sfu.slot="):
            try:
                return Slot(arg.removeprefix("sfu.slot="))
            except ValueError:
                break
    raise DeviceStateError("the kernel command line names no slot (sfu.slot=A or B): is the "
                           "bootloader script installed?")


def health_check(command: Sequence[str]) -> tuple[bool, str]:
    if not command:
        return True, "no health command configured"
    try:
        done = subprocess.run(list(command), capture_output=True, timeout=HEALTH_TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"health command failed to run: {exc}"
    return done.returncode == 0, f"health command exited {done.returncode}"


def reconcile(board: LinuxBoard, running: Slot, boot_id: str, confirm: bool) -> Reconciled:
    kernel = Kernel(board.storage)
    marker = board.config.state_dir / "reconciled-boot"
    events: list[str] = []
    # The transitions run in two holds of the storage lock, before and after the slot's
    # verification and health check (which may take long, or ask the agent): within a hold
    # the TPM's index is read once (TpmStorage), not once per transition.
    with board.storage.lock():
        if marker.exists() and marker.read_text() == boot_id:
            state = kernel.state()
            boot = state.boot
            if boot.booted is not running:
                raise DeviceStateError(f"this boot was recorded as slot {boot.booted}, but "
                                       f"slot {running.value} runs")
            trial = boot.trial is running
            healthy = boot.trial_healthy if trial else True
            events.append("this boot was already reconciled")
            return _finish(board, kernel, state, running, trial, healthy, confirm, events)
        state, trial = _start(board, kernel, running, events)
    image = state.boot.slot(running).image
    assert image is not None  # BootRecord.check(): a booted slot holds an image
    try:
        check = verify_slot(board, running, image, state.signer_keys(image), state.device,
                            state.boot.floor)
    except SfuError as exc:
        if trial:
            kernel.trial_failed(running)
        raise type(exc)(f"running slot {running.value} fails verification: {exc}") from None
    healthy, why = health_check(board.config.health_command)
    healthy = healthy and check.healthy
    events.append(f"slot {running.value} ({'trial' if trial else 'confirmed'}) verified; "
                  f"{why}")
    with board.storage.lock():
        state = kernel.booted(running, check.manifest_digest, healthy)
        marker.write_text(boot_id)
        return _finish(board, kernel, state, running, trial, healthy, confirm, events)


def _start(board: LinuxBoard, kernel: Kernel, running: Slot,
           events: list[str]) -> tuple[SecureState, bool]:
    """The kernel's start_boot for the slot the bootloader started: (state, is it a trial)."""
    before = kernel.state()
    boot = before.boot
    if board.mirror is not None and boot.trial is not None and boot.tries_left > 0 \
            and running is boot.confirmed \
            and boot.trial.value not in board.mirror.env.read().get("BOOT_ORDER", "").split():
        board.mirror.sync(boot)
        raise DeviceStateError(f"the bootloader's environment did not list trial slot "
                               f"{boot.trial.value} yet (power lost right after the "
                               "install?): re-mirrored; reboot to try it")
    # a new measured boot, as the sim's ROM starts one: the confirmed agent bundle first
    kernel.measure_agent(before.agent.active_bundle.digest)
    state, chosen, trial = kernel.start_boot()
    if chosen is not running and running is boot.confirmed and trial:
        events.append(f"the bootloader fell back to confirmed slot {running.value}: trial "
                      f"slot {chosen.value} did not come up; marked bad")
        kernel.trial_failed(chosen)
        state, chosen, trial = kernel.start_boot()
    if chosen is not running:
        if board.mirror is not None:
            board.mirror.sync(state.boot)
        raise DeviceStateError(f"slot {running.value} runs, but the kernel boots slot "
                               f"{chosen.value}: the bootloader environment was out of "
                               "step (now re-mirrored); reboot")
    return state, trial


def _finish(board: LinuxBoard, kernel: Kernel, state: SecureState, running: Slot, trial: bool,
            healthy: bool, confirm: bool, events: list[str]) -> Reconciled:
    """Confirm a healthy trial if asked, and mirror the boot record."""
    done = False
    if trial and healthy and confirm:
        state = kernel.confirm()
        done = True
        events.append(f"trial slot {running.value} confirmed; floor {state.boot.floor}")
    elif trial and not healthy:
        events.append(f"trial slot {running.value} is unhealthy: marked bad; reboot to run "
                      f"confirmed slot {state.boot.confirmed.value}")
    if board.mirror is not None:
        board.mirror.sync(state.boot)
    return Reconciled(running.value, trial, healthy, done, events)


def reconcile_this_boot(board: LinuxBoard, confirm: bool) -> Reconciled:
    """`reconcile` for the running system: its kernel command line and boot ID."""
    running = running_slot(board.config.cmdline.read_text())
    return reconcile(board, running, BOOT_ID.read_text().strip(), confirm)

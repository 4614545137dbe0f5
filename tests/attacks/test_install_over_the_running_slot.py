"""Attack: while a trial runs from slot B, the Rich OS installs a new image, which used to go to
"the slot that is not confirmed": the running slot itself. Status then called the new image
running, and a confirm (which only checked "booted is trial") confirmed an image that never
booted, leaving nothing to fall back to. Installs now never target the running slot nor the
confirmed one, and a confirm needs a trial that the boot code started since it was installed
and that passed its health check."""

from __future__ import annotations

import pytest

from sfupdate import errors
from sfupdate.secure.board.sim import open_board
from sfupdate.secure.kernel import Kernel
from tests.device_world import DeviceWorld


def _running_trial(world: DeviceWorld) -> None:
    world.install(world.image(2))
    result = world.boot()
    assert (result.slot, result.trial) == ("B", True)


def test_install_while_a_trial_runs_is_refused_and_changes_nothing(world: DeviceWorld) -> None:
    _running_trial(world)
    with world.unchanged(), pytest.raises(errors.DeviceStateError,
                                          match="never overwrites either"):
        world.install(world.image(3))


def test_install_after_rejecting_the_running_trial_waits_for_a_reboot(
        world: DeviceWorld) -> None:
    _running_trial(world)
    world.client().reject_trial()
    with world.unchanged(), pytest.raises(errors.DeviceStateError, match="runs a bad image"):
        world.install(world.image(3))
    assert world.boot().slot == "A"  # reboot into the confirmed image
    assert world.install(world.image(3)).slot == "B"


def test_an_installed_image_that_never_booted_cannot_be_confirmed(world: DeviceWorld) -> None:
    world.install(world.image(2))
    with world.unchanged(), pytest.raises(errors.DeviceStateError, match="reboot first"):
        world.client().confirm()


def test_a_trial_whose_health_check_never_finished_cannot_be_confirmed(
        world: DeviceWorld) -> None:
    """Power is cut after the boot code chose the trial (a try spent) and before its health
    check passed: the trial is the booted slot, but it is not known healthy."""
    world.install(world.image(2))
    kernel = Kernel(open_board(world.root).storage)
    _, slot, trial = kernel.start_boot()  # ...and here the power fails
    assert (slot.value, trial) == ("B", True)
    with world.unchanged(), pytest.raises(errors.DeviceStateError, match="health check"):
        world.client().confirm()
    assert world.boot().slot == "B"  # the next boot runs it again, and then it may be confirmed
    assert world.client().confirm().rollback_floor == 2


def test_the_running_trial_is_confirmed_and_the_next_install_goes_to_the_old_slot(
        world: DeviceWorld) -> None:
    _running_trial(world)
    world.client().confirm()
    assert world.install(world.image(3)).slot == "A"

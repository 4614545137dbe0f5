"""Attack: `sfu board confirm` changed boot state directly, without the agent's checks. It now
takes the kernel's confirm transition, with the same rules as `sfu agent confirm`."""

from __future__ import annotations

import pytest

from sfupdate.cli.main import main
from tests.device_world import DeviceWorld


def test_board_confirm_of_a_trial_that_never_booted_is_refused(
        world: DeviceWorld, capsys: pytest.CaptureFixture[str]) -> None:
    world.install(world.image(2))
    with world.unchanged():
        code = main(["board", "confirm", str(world.root)])
    err = capsys.readouterr().err.splitlines()
    assert code == 12 and len(err) == 1 and "has not been booted" in err[0]


def test_board_confirm_of_a_booted_healthy_trial_raises_the_floor(
        world: DeviceWorld, capsys: pytest.CaptureFixture[str]) -> None:
    world.install(world.image(2))
    world.boot()
    assert main(["board", "confirm", str(world.root)]) == 0
    assert "rollback floor is now 2" in capsys.readouterr().out
    assert world.client().status().rollback_floor == 2

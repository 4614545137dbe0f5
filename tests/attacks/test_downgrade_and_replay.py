"""Attack: downgrade, or replay of an old signed image. Every image here is genuine, signed by
the device's own author: only its sequence number is old. The agent refuses anything not
strictly above both the running image and the rollback floor, so an old image with a known
vulnerability can never come back, and a refusal changes nothing.
"""

from __future__ import annotations

import pytest

from sfupdate.errors import DowngradeError
from tests.device_world import DeviceWorld


def test_older_image_is_refused(world: DeviceWorld) -> None:
    world.install(world.image(3))
    world.boot()
    world.client().confirm()  # 3 runs and is confirmed: the floor is 3
    with world.unchanged():
        for old in (0, 1, 2):
            with pytest.raises(DowngradeError, match="not above 3"):
                world.install(world.image(old))


def test_replay_of_the_running_image_is_refused(world: DeviceWorld) -> None:
    with world.unchanged(), pytest.raises(DowngradeError, match="not above 1"):
        world.install(world.image(1))


def test_replay_of_a_previously_installed_image_is_refused(world: DeviceWorld) -> None:
    """The attacker recorded the exact bytes of an earlier update and plays them back after
    the device moved on."""
    recorded = world.image(2)
    world.install(recorded)
    world.boot()
    world.client().confirm()
    world.install(world.image(3))
    world.boot()
    status = world.client().confirm()
    assert (status.running_sequence, status.rollback_floor) == (3, 3)
    with world.unchanged(), pytest.raises(DowngradeError):
        world.install(recorded)


def test_running_trial_already_counts_before_it_is_confirmed(world: DeviceWorld) -> None:
    """Once the new image runs (on trial), an image below it is refused, even though the
    floor has not risen yet."""
    world.install(world.image(5))
    assert world.boot().sequence == 5
    status = world.client().status()
    assert (status.running_sequence, status.rollback_floor) == (5, 1)
    with world.unchanged(), pytest.raises(DowngradeError, match="running 5"):
        world.install(world.image(4))


def test_floor_survives_a_restart_of_the_agent(world: DeviceWorld) -> None:
    """The floor lives in replay-protected secure storage, not in the agent's memory."""
    world.install(world.image(4))
    world.boot()
    world.client().confirm()
    world.stop_agent()
    world.start_agent()
    with world.unchanged(), pytest.raises(DowngradeError, match="rollback floor 4"):
        world.install(world.image(3))

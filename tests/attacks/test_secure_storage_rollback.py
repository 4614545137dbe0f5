"""Attack: rollback of secure storage. The rollback floor and boot control live in secure
storage, whose files the attacker can copy and put back (the flash is theirs; only the RPMB
write-counter register, a piece of hardware, is not). The attacker saves the storage while the
floor is low, lets the device update, then restores the old copy — even renamed to the file
name the counter expects. Nothing ever acts on the old state: the agent refuses every request,
refuses to start, and the boot refuses to pick a slot from it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from sfupdate.errors import StorageIntegrityError
from tests.device_world import DeviceWorld


def test_restored_old_storage_cannot_lower_the_floor(world: DeviceWorld) -> None:
    old = world.save_secure_storage()  # floor 1, sequence 1 confirmed
    world.install(world.image(2))
    world.boot()
    assert world.client().confirm().rollback_floor == 2

    world.restore_secure_storage(old)
    with pytest.raises(StorageIntegrityError):
        world.client().status()
    with pytest.raises(StorageIntegrityError):  # the old floor would have allowed this
        world.install(world.image(2))
    with pytest.raises(StorageIntegrityError):
        world.client().reject_trial()
    with pytest.raises(StorageIntegrityError):
        world.boot()


def test_storage_rolled_back_to_before_an_install_does_not_resurrect_the_trial_state(
        world: DeviceWorld) -> None:
    """Restoring the state from before a (bad) trial was rejected, to make it bootable
    again, is refused too."""
    world.install(world.image(2))
    with_trial = world.save_secure_storage()
    world.client().reject_trial()
    world.restore_secure_storage(with_trial)
    with pytest.raises(StorageIntegrityError):
        world.boot()


def test_agent_refuses_to_start_on_rolled_back_storage(world: DeviceWorld) -> None:
    old = world.save_secure_storage()
    world.install(world.image(2))
    world.stop_agent()
    world.restore_secure_storage(old)
    serve = subprocess.run(
        [sys.executable, "-m", "sfupdate.cli.main", "agent", "serve", "--board",
         str(world.root), "--socket", str(world.socket_dir / "again.sock")],
        capture_output=True, text=True, timeout=30, check=False)
    assert serve.returncode == StorageIntegrityError.exit_code, serve.stderr
    assert serve.stderr.count("\n") == 1 and "sfu: error:" in serve.stderr
    assert not (world.socket_dir / "again.sock").exists()

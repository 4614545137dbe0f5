"""Attack: power cut at every write. Power can fail at any instant — the attacker may even
choose the instant. Here the real agent process installs an update and the board's power-cut
knob kills it (exit 75) at its 1st, 2nd, ... write, until an install runs to the end; after
each cut the device reboots and must boot an authentic image at or above the floor, with
the confirmed image intact and a half-written slot never bootable.

This is the process-level companion of the in-process sweeps, which cut at every write of
whole update cycles (install, boot, confirm, revert, exhausted tries):
tests/board/test_power_cut.py::test_power_cut_at_every_write_never_bricks_or_downgrades,
every write of a storage update: tests/board/test_storage.py::
test_power_cut_at_every_storage_write_step_leaves_old_or_new, and up to three chained cuts
at random points, recovery included: tests/faults/test_chained_power_cuts.py.
"""

from __future__ import annotations

import shutil

import pytest

from sfupdate.errors import IpcError
from sfupdate.secure.board.hal import Slot
from sfupdate.secure.board.power import POWER_CUT_EXIT
from sfupdate.secure.board.records import SlotStatus
from sfupdate.secure.board.sim import POWER_KNOB
from tests.device_world import DeviceWorld
from tests.world import FIRMWARE_V1


def test_power_cut_at_every_write_of_an_install_through_the_agent(
        world: DeviceWorld, capsys: pytest.CaptureFixture[str]) -> None:
    image = world.image(2)
    world.stop_agent()
    template = world.root.parent / "template"
    shutil.copytree(world.root, template)
    cut, completed = 0, False
    while not completed:
        cut += 1
        assert cut < 100, "the install never completed"
        device = DeviceWorld(world.root.parent / f"cut{cut}", world.socket_dir, world.author)
        shutil.copytree(template, device.root)
        (device.root / POWER_KNOB).write_text(str(cut))
        agent = device.start_agent()
        try:
            device.install(image, chunk=len(image))
            completed = True  # the knob was never reached: every write point is covered
        except IpcError:
            assert agent.proc.wait(10) == POWER_CUT_EXIT, agent.log.read_text()
        finally:
            device.stop_agent()

        result = device.boot()  # raises if no authentic slot boots
        record = device.record()
        assert record.floor == 1 and record.confirmed is Slot.A
        assert device.slot_bytes(Slot.A)[:len(FIRMWARE_V1)] == FIRMWARE_V1
        if record.slot(Slot.B).status in (SlotStatus.TRIAL, SlotStatus.CONFIRMED):
            assert result.sequence == 2  # only a complete, verified image may be tried
        else:
            assert (result.slot, result.sequence) == ("A", 1)
        if not completed:
            shutil.rmtree(device.root)
    with capsys.disabled():
        print(f"\n[power-cut] agent process cut at each of {cut - 1} write points of an "
              "install; every reboot booted an authentic image at or above the floor")
    assert cut > 15

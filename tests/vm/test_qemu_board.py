"""The QEMU board runs the real thing (docs/board.md, "The QEMU board"): GRUB picks the slot
from the environment the agent mirrors, the agent and the client run in the guest as their
units' users, the secure state is anchored in swtpm as the guest's TPM, and updates arrive on
a second disk (the guest has no network device).

One device for the module, in the order of its life: v1 -> v2 (trial, confirmed, floor
raised), a downgrade and a tampered image refused, an unhealthy v3 reverted by GRUB's count."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.vm.conftest import Firmware, client_update, status
from tests.vm.qemu import BOOTED, Device, Guest, update_stick

pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def guest(provisioned: Device, firmware: Firmware,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    root = tmp_path_factory.mktemp("vm-board")
    device = provisioned.copy(root / "device")
    stick = update_stick(root / "stick.img", {
        "v2.sfui": firmware.sfui(2), "v1.sfui": firmware.sfui(1),
        "v4-tampered.sfui": firmware.tampered(4), "v3.sfui": firmware.sfui(3, healthy=False)})
    running = Guest(device, stick, root / "serial.log")
    try:
        assert running.ready() == ("A", 1)
        yield running
    finally:
        running.close()


def slots(state: dict[str, Any]) -> dict[str, tuple[str, int | None]]:
    return {name: (slot["state"], slot["sequence"]) for name, slot in state["slots"].items()}


def test_v1_to_v2_installs_into_the_inactive_slot_boots_on_trial_and_mark_good_raises_the_floor(
        guest: Guest) -> None:
    before = status(guest)
    assert before["rollback_floor"] == 1 and before["running_slot"] == "A"

    code, out = client_update(guest, "v2.sfui")
    assert code == 0, out
    assert '"slot": "B"' in out and '"sequence": 2' in out
    trial = status(guest)
    assert slots(trial)["B"] == ("trial", 2) and trial["trial_slot"] == "B"
    assert trial["bootloader"] == {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}
    assert trial["rollback_floor"] == 1

    guest.reboot()
    assert guest.expect(BOOTED, 600).groups() == ("B", "2")  # GRUB chose the trial
    mark_good = guest.expect(r"SFU-VM: mark-good: (.*)\n", 600).group(1)
    assert "trial slot B confirmed; floor 2" in mark_good
    assert guest.ready() == ("B", 2)
    after = status(guest)
    assert after["rollback_floor"] == 2 and after["confirmed_slot"] == "B"
    assert slots(after) == {"A": ("superseded", 1), "B": ("confirmed", 2)}
    assert after["bootloader"] == {"BOOT_ORDER": "B", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "3"}


def test_a_downgrade_is_refused_and_changes_nothing(guest: Guest) -> None:
    before = status(guest)
    code, out = client_update(guest, "v1.sfui")
    assert code != 0 and ("Downgrade" in out or "floor" in out), out
    assert status(guest) == before


def test_a_tampered_image_is_refused_and_the_running_firmware_stays(guest: Guest) -> None:
    before = status(guest)
    code, out = client_update(guest, "v4-tampered.sfui")
    assert code != 0, out
    assert "digest" in out.lower(), out
    after = status(guest)
    # the install slot may be left `invalid` (its old image was overwritten before the
    # payload's digest could be checked); nothing else changes and nothing boots from it
    assert after["slots"]["B"] == before["slots"]["B"]  # type: ignore[index]
    assert after["rollback_floor"] == 2 and after["trial_slot"] is None
    assert after["bootloader"] == before["bootloader"]
    assert slots(after)["A"][0] in ("superseded", "invalid")


def test_an_unhealthy_v3_is_reverted_by_the_bootloader_boot_count(guest: Guest) -> None:
    code, out = client_update(guest, "v3.sfui")
    assert code == 0, out
    assert status(guest)["bootloader"] == {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3",
                                           "BOOT_B_LEFT": "3"}
    guest.reboot()
    for _ in range(3):  # GRUB spends the trial's three tries; v3 never reaches mark-good
        assert guest.expect(BOOTED, 600).groups() == ("A", "3")
        guest.expect("SFU-VM: health check failed", 120)
    assert guest.expect(BOOTED, 600).groups() == ("B", "2")  # then falls back to v2,
    assert guest.ready() == ("B", 2)  # whose reconciliation marks the trial bad
    after = status(guest)
    assert slots(after) == {"A": ("bad", 3), "B": ("confirmed", 2)}
    assert after["rollback_floor"] == 2 and after["trial_slot"] is None
    assert after["bootloader"] == {"BOOT_ORDER": "B", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "3"}

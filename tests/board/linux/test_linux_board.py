"""A whole linux board on real tools: swtpm, file-backed slots, U-Boot's and GRUB's
environments. The kernel and the agent's install run unchanged over it; the bootloader's
environment mirrors every boot-control change; the post-boot reconciliation maps what the
bootloader booted onto the kernel's transitions."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sfupdate.authoring.author.bundle import build_agent_bundle
from sfupdate.errors import DeviceStateError, StorageIntegrityError
from sfupdate.formats.sfui import TrustedKey
from sfupdate.keys.files import FileSigner
from sfupdate.secure.agent.device import Device
from sfupdate.secure.agent.install import install
from sfupdate.secure.board.hal import LIFECYCLE_PROVISIONED, Fuse, Slot
from sfupdate.secure.board.linux.board import LinuxBoard
from sfupdate.secure.board.linux.bootenv import GrubEnv, UBootEnv
from sfupdate.secure.board.linux.config import load_config
from sfupdate.secure.board.power import Power
from sfupdate.secure.board.records import SlotStatus
from sfupdate.secure.boot.linux import reconcile, running_slot
from sfupdate.secure.boot.provision import provision
from tests.board.conftest import Images
from tests.board.linux.conftest import CountingTpm, SoftTpm, need, write_config
from tests.world import CLASS_NAME, VENDOR_NAME


def provisioned(tmp_path: Path, swtpm: SoftTpm, images: Images, trusted: TrustedKey,
                agent_signer: FileSigner, bootloader: str = "u-boot",
                health: str = "") -> LinuxBoard:
    need("fw_setenv" if bootloader == "u-boot" else "grub-editenv")
    extra = f"[health]\ncommand = {health}\n" if health else ""
    board = LinuxBoard(load_config(write_config(tmp_path, swtpm.tcti, bootloader, extra)))
    provision(board, [trusted], VENDOR_NAME, CLASS_NAME, images.v1,
              build_agent_bundle(agent_signer), TrustedKey(agent_signer.public_key))
    return board


def env_of(board: LinuxBoard) -> dict[str, str]:
    assert board.mirror is not None
    return board.mirror.env.read()


@pytest.mark.parametrize("bootloader", ["u-boot", "grub"])
def test_install_boot_confirm_through_the_bootloader(
        tmp_path: Path, swtpm: SoftTpm, images: Images, es256_trusted: TrustedKey,
        agent_signer: FileSigner, bootloader: str) -> None:
    board = provisioned(tmp_path, swtpm, images, es256_trusted, agent_signer, bootloader)
    assert board.fuses.read(Fuse.LIFECYCLE) == LIFECYCLE_PROVISIONED
    assert env_of(board) == {"BOOT_ORDER": "A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"}

    first = reconcile(board, Slot.A, "boot-1", confirm=True)  # first boot, confirmed A
    assert (first.slot, first.trial, first.healthy) == ("A", False, True)

    device = Device(board)
    with open(images.v2, "rb") as f:
        done = install(device, f)
    assert done.slot is Slot.B
    assert env_of(board) == {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}

    # the bootloader boots B, spending a try in its own environment...
    assert board.mirror is not None
    board.mirror.env.write({"BOOT_B_LEFT": "2"})
    result = reconcile(board, Slot.B, "boot-2", confirm=True)  # ...the mark-good unit runs
    assert (result.slot, result.trial, result.healthy, result.confirmed) == \
        ("B", True, True, True)
    state = device.kernel.state()
    assert state.boot.confirmed is Slot.B and state.boot.floor == 2
    assert state.boot.slot(Slot.A).status is SlotStatus.SUPERSEDED
    assert env_of(board) == {"BOOT_ORDER": "B", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "3"}
    again = reconcile(board, Slot.B, "boot-2", confirm=True)  # the agent restarts: no-op
    assert "already reconciled" in again.events[0]


def test_a_boot_reconciliation_reads_the_tpm_index_once_before_and_once_after_the_check(
        tmp_path: Path, swtpm: SoftTpm, images: Images, es256_trusted: TrustedKey,
        agent_signer: FileSigner) -> None:
    """Its transitions run in two holds of the storage lock (start, then booted and confirm):
    the index is read once per hold, not once per transition (each read is a TPM command,
    a noticeable part of a small board's boot)."""
    config = provisioned(tmp_path, swtpm, images, es256_trusted, agent_signer, "grub").config
    board = LinuxBoard(config)  # as the mark-good unit's process opens it
    board.tpm = tpm = CountingTpm(swtpm.tcti)
    result = reconcile(board, Slot.A, "boot-1", confirm=True)
    assert (result.slot, result.trial, result.healthy) == ("A", False, True)
    assert tpm.commands.count("NV_Read") == 2
    assert tpm.commands.count("NV_Extend") == 3  # measure_agent, start_boot, booted


def test_a_trial_the_bootloader_gave_up_on_is_marked_bad(
        tmp_path: Path, swtpm: SoftTpm, images: Images, es256_trusted: TrustedKey,
        agent_signer: FileSigner) -> None:
    board = provisioned(tmp_path, swtpm, images, es256_trusted, agent_signer)
    reconcile(board, Slot.A, "boot-1", confirm=True)
    with open(images.v2, "rb") as f:
        install(Device(board), f)
    # B never came up (kernel panic): the bootloader counted its tries down and fell back
    result = reconcile(board, Slot.A, "boot-2", confirm=True)
    assert not result.trial and "did not come up" in result.events[0]
    boot = Device(board).kernel.state().boot
    assert boot.slot(Slot.B).status is SlotStatus.BAD and boot.trial is None
    assert env_of(board) == {"BOOT_ORDER": "A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"}


def test_a_trial_the_environment_never_listed_is_not_held_against_it(
        tmp_path: Path, swtpm: SoftTpm, images: Images, es256_trusted: TrustedKey,
        agent_signer: FileSigner) -> None:
    """Power lost between the trial's commit and its mirror: the bootloader never tried it.
    Nothing is recorded, the environment is repaired, and the next boot tries it."""
    board = provisioned(tmp_path, swtpm, images, es256_trusted, agent_signer)
    with open(images.v2, "rb") as f:
        install(Device(board), f)
    assert board.mirror is not None
    board.mirror.env.write({"BOOT_ORDER": "A", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "0"})
    with pytest.raises(DeviceStateError, match="did not list trial slot B"):
        reconcile(board, Slot.A, "boot-2", confirm=True)
    assert env_of(board)["BOOT_ORDER"] == "B A"
    assert Device(board).kernel.state().boot.tries_left == 3
    assert reconcile(board, Slot.B, "boot-3", confirm=True).confirmed


def test_an_unhealthy_trial_is_rejected(
        tmp_path: Path, swtpm: SoftTpm, images: Images, es256_trusted: TrustedKey,
        agent_signer: FileSigner) -> None:
    board = provisioned(tmp_path, swtpm, images, es256_trusted, agent_signer,
                        health='["/bin/false"]')
    with open(images.v2, "rb") as f:
        install(Device(board), f)
    result = reconcile(board, Slot.B, "boot-2", confirm=True)
    assert result.trial and not result.healthy and not result.confirmed
    assert Device(board).kernel.state().boot.slot(Slot.B).status is SlotStatus.BAD
    assert env_of(board)["BOOT_ORDER"] == "A"


def test_a_slot_the_kernel_would_not_boot_is_refused(
        tmp_path: Path, swtpm: SoftTpm, images: Images, es256_trusted: TrustedKey,
        agent_signer: FileSigner) -> None:
    """Someone edited the environment to boot B, which holds no trial: refused, re-mirrored."""
    board = provisioned(tmp_path, swtpm, images, es256_trusted, agent_signer)
    assert board.mirror is not None
    board.mirror.env.write({"BOOT_ORDER": "B A", "BOOT_B_LEFT": "3"})
    with pytest.raises(DeviceStateError, match="out of step"):
        reconcile(board, Slot.B, "boot-1", confirm=True)
    assert env_of(board)["BOOT_ORDER"] == "A"


def test_storage_rolled_back_on_a_linux_board(
        tmp_path: Path, swtpm: SoftTpm, images: Images, es256_trusted: TrustedKey,
        agent_signer: FileSigner) -> None:
    board = provisioned(tmp_path, swtpm, images, es256_trusted, agent_signer)
    state_dir = board.config.state_dir
    [before] = state_dir.glob("store-*")
    saved = before.read_bytes()
    with open(images.v2, "rb") as f:
        install(Device(board), f)
    [after] = state_dir.glob("store-*")
    after.write_bytes(saved)
    with pytest.raises(StorageIntegrityError):
        Device(LinuxBoard(board.config, Power())).kernel.state()


def test_running_slot_from_the_kernel_command_line() -> None:
    assert running_slot("console=ttyS0 root=PARTLABEL=rootfs-b sfu.slot=B rw") is Slot.B
    with pytest.raises(DeviceStateError, match="names no slot"):
        running_slot("console=ttyS0 sfu.slot=C")


def test_without_a_tpm_the_board_refuses_unless_insecure(tmp_path: Path, images: Images,
                                                         es256_trusted: TrustedKey,
                                                         agent_signer: FileSigner) -> None:
    config = load_config(write_config(tmp_path, None, "none"))
    with pytest.raises(DeviceStateError, match="--insecure-storage"):
        LinuxBoard(config)
    board = LinuxBoard(config, insecure_storage=True)
    provision(board, [es256_trusted], VENDOR_NAME, CLASS_NAME, images.v1,
              build_agent_bundle(agent_signer), TrustedKey(agent_signer.public_key))
    assert LinuxBoard(config).insecure  # once provisioned that way, it opens that way
    assert Device(LinuxBoard(config)).kernel.state().boot.confirmed is Slot.A


def test_env_classes_read_only_boot_control(tmp_path: Path) -> None:
    need("fw_setenv", "grub-editenv")
    from tests.board.linux.conftest import uboot_env
    uboot = UBootEnv(uboot_env(tmp_path), tmp_path / "u-boot-initial-env")
    uboot.write({"BOOT_ORDER": "A B", "BOOT_A_LEFT": "1"})
    assert uboot.read() == {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "1"}  # not bootdelay
    grub = GrubEnv(tmp_path / "grubenv")
    assert grub.read() == {}
    grub.write({"BOOT_ORDER": "B A"})
    assert grub.read() == {"BOOT_ORDER": "B A"}
    assert (tmp_path / "grubenv").stat().st_size == 1024


def test_the_grub_environment_is_read_as_grub_reads_it(tmp_path: Path) -> None:
    """Without grub-editenv's listing, which prints an escaped newline raw: a value holding
    one must not read as another variable (GRUB itself sees one value)."""
    need("grub-editenv")
    path = tmp_path / "grubenv"
    grub = GrubEnv(path)
    grub.write({"BOOT_ORDER": "B A", "BOOT_A_LEFT": "2"})
    subprocess.run(["grub-editenv", str(path), "set", "note=x\\y\nBOOT_ORDER=A"], check=True)
    assert grub.read() == {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "2"}
    path.write_bytes(b"#" * 1024)
    with pytest.raises(DeviceStateError, match="not a GRUB environment block"):
        grub.read()


def test_every_boot_starts_a_new_measured_boot(
        tmp_path: Path, swtpm: SoftTpm, images: Images, es256_trusted: TrustedKey,
        agent_signer: FileSigner) -> None:
    """Found by the QEMU board: the measurements of every boot piled up until the log was
    full (after four boots) and mark-good failed at every boot after."""
    board = provisioned(tmp_path, swtpm, images, es256_trusted, agent_signer)
    for n in range(10):
        assert reconcile(board, Slot.A, f"boot-{n}", confirm=True).slot == "A"
    measured = Device(board).kernel.state().measured
    assert [event.stage for event in measured.events] == ["agent", "manifest", "firmware"]

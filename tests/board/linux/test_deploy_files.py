"""The deployment files shipped in the package (sfupdate/secure/board/linux/deploy/): the systemd
units pass `systemd-analyze verify`, the GRUB fragment parses, the U-Boot script compiles."""

from __future__ import annotations

import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from tests.board.linux.conftest import need

DEPLOY = Path(str(resources.files("sfupdate.secure.board.linux") / "deploy"))
UNITS = ["sfupdate-agent.service", "sfupdate-mark-good.service", "sfupdate-client.service",
         "sfupdate-client.timer"]


def test_the_package_ships_the_deployment_files() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*") if p.is_file()}
    assert {f"systemd/{u}" for u in UNITS} | {"systemd/sfupdate.sysusers",
                                              "systemd/90-sfupdate.rules", "u-boot/boot.cmd",
                                              "grub/grub.cfg"} <= names


def test_systemd_units_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    sfu = shutil.which("sfu") or str(Path(__file__).parents[3] / ".venv" / "bin" / "sfu")
    for unit in UNITS:  # the units name the installed path; point them at this one
        text = (DEPLOY / "systemd" / unit).read_text()
        (tmp_path / unit).write_text(text.replace("/usr/bin/sfu", sfu))
    done = subprocess.run([analyze, "verify", "--man=no", *(str(tmp_path / u) for u in UNITS)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_agent_unit_confines_the_agent() -> None:
    unit = (DEPLOY / "systemd" / "sfupdate-agent.service").read_text()
    for line in ("DevicePolicy=closed", "DeviceAllow=/dev/tpmrm0 rw", "ProtectSystem=strict",
                 "PrivateNetwork=yes", "User=sfupdate-agent", "CapabilityBoundingSet=\n"):
        assert line in unit


def test_mark_good_unit_is_only_a_client_of_the_agent() -> None:
    """It asks the running agent to confirm: no TPM, no slot device, no secure state."""
    unit = (DEPLOY / "systemd" / "sfupdate-mark-good.service").read_text()
    for line in ("User=sfupdate-client", "ExecStart=/usr/bin/sfu agent mark-good",
                 "PrivateDevices=yes", "DevicePolicy=closed", "FailureAction=reboot",
                 "RestrictAddressFamilies=AF_UNIX\n"):
        assert line in unit
    assert "DeviceAllow" not in unit and "tss" not in unit and "StateDirectory" not in unit


def test_grub_fragment_parses() -> None:
    need("grub-script-check")
    done = subprocess.run(["grub-script-check", str(DEPLOY / "grub" / "grub.cfg")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_u_boot_script_compiles(tmp_path: Path) -> None:
    need("mkimage")
    done = subprocess.run(["mkimage", "-A", "arm64", "-T", "script", "-C", "none", "-d",
                           str(DEPLOY / "u-boot" / "boot.cmd"), str(tmp_path / "boot.scr")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

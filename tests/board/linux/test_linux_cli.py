"""The linux device through the CLI, as the systemd units run it: `sfu board linux provision`,
`sfu agent serve --config`, `sfu install`, `sfu board linux mark-good` and `status`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from sfupdate.keys.files import FileSigner
from tests.board.conftest import Images
from tests.board.linux.conftest import SoftTpm, need, write_config
from tests.world import CLASS_NAME, VENDOR_NAME


def sfu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sfupdate.cli.main", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_provision_serve_install_mark_good(tmp_path: Path, swtpm: SoftTpm, images: Images,
                                           es256_signer: FileSigner) -> None:
    need("fw_setenv")
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 sfu.slot=A\n")
    config = write_config(tmp_path, swtpm.tcti)
    config.write_text(config.read_text().replace(
        "[slots]", f'cmdline = "{cmdline}"\n[slots]'))
    trust = tmp_path / "fw.pub.pem"
    trust.write_bytes(es256_signer.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    done = sfu("board", "linux", "provision", "--config", str(config), "--trust", str(trust),
               "--vendor", VENDOR_NAME, "--class", CLASS_NAME, "--firmware", str(images.v1))
    assert done.returncode == 0, done.stderr
    again = sfu("board", "linux", "provision", "--config", str(config), "--trust", str(trust),
                "--vendor", VENDOR_NAME, "--class", CLASS_NAME, "--firmware", str(images.v1))
    assert again.returncode == 12 and "already provisioned" in again.stderr

    sock = tmp_path / "agent.sock"
    log = (tmp_path / "agent.log").open("wb")
    agent = subprocess.Popen([sys.executable, "-m", "sfupdate.cli.main", "agent", "serve",
                              "--config", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert agent.poll() is None, (tmp_path / "agent.log").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        installed = sfu("install", "--socket", str(sock), str(images.v2))
        assert installed.returncode == 0, installed.stderr
    finally:
        agent.terminate()
        agent.wait(10)

    status = json.loads(sfu("board", "linux", "status", "--config", str(config),
                            "--json").stdout)
    assert status["trial_slot"] == "B" and status["booted_slot"] == "A"
    assert status["bootloader"] == {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3",
                                    "BOOT_B_LEFT": "3"}

    # reboot: the bootloader runs B (a new boot ID; here, the old one's marker is dropped)
    (tmp_path / "state" / "reconciled-boot").unlink()
    cmdline.write_text("console=ttyS0 sfu.slot=B\n")
    good = sfu("board", "linux", "mark-good", "--config", str(config))
    assert good.returncode == 0, good.stderr
    assert "trial slot B confirmed; floor 2" in good.stdout
    status = json.loads(sfu("board", "linux", "status", "--config", str(config),
                            "--json").stdout)
    assert (status["confirmed_slot"], status["rollback_floor"], status["trial_slot"]) == (
        "B", 2, None)
    assert status["bootloader"]["BOOT_ORDER"] == "B"
    assert status["insecure_storage"] is False


def test_provision_without_a_tpm_needs_the_insecure_flag(tmp_path: Path, images: Images,
                                                         es256_signer: FileSigner) -> None:
    config = write_config(tmp_path, None, "none")
    trust = tmp_path / "fw.pub.pem"
    trust.write_bytes(es256_signer.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    args = ["board", "linux", "provision", "--config", str(config), "--trust", str(trust),
            "--vendor", VENDOR_NAME, "--class", CLASS_NAME, "--firmware", str(images.v1)]
    refused = sfu(*args)
    assert refused.returncode == 12 and "--insecure-storage" in refused.stderr
    done = sfu(*args, "--insecure-storage")
    assert done.returncode == 0, done.stderr
    assert "WARNING: --insecure-storage" in done.stderr

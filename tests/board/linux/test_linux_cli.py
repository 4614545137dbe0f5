"""The linux device through the CLI, as the systemd units run it: `sfu board linux provision`,
`sfu agent serve --config`, `sfu install`, `sfu board linux mark-good` and `status`."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sfupdate.authoring.author.encrypt import load_recipient_key
from sfupdate.keys.files import FileSigner
from tests.board.conftest import Images
from tests.board.linux.conftest import SoftTpm, need, write_config
from tests.world import CLASS_NAME, VENDOR_NAME, encrypted_sfui


def sfu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sfupdate.cli.main", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def provisioned(tmp_path: Path, swtpm: SoftTpm, images: Images,
                es256_signer: FileSigner) -> Path:
    """A device provisioned through the CLI (TPM storage, U-Boot, booted from slot A: the
    kernel command line is tmp_path/cmdline); its config file."""
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
    return config


@contextlib.contextmanager
def serving(config: Path, tmp_path: Path) -> Iterator[Path]:
    """`sfu agent serve --config` (its socket is tmp_path/agent.sock), stopped afterwards."""
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
        yield sock
    finally:
        agent.terminate()
        agent.wait(10)


def test_provision_serve_install_mark_good(tmp_path: Path, swtpm: SoftTpm, images: Images,
                                           es256_signer: FileSigner) -> None:
    config = provisioned(tmp_path, swtpm, images, es256_signer)
    cmdline, trust = tmp_path / "cmdline", tmp_path / "fw.pub.pem"
    again = sfu("board", "linux", "provision", "--config", str(config), "--trust", str(trust),
                "--vendor", VENDOR_NAME, "--class", CLASS_NAME, "--firmware", str(images.v1))
    assert again.returncode == 12 and "already provisioned" in again.stderr

    with serving(config, tmp_path) as sock:
        installed = sfu("install", "--socket", str(sock), str(images.v2))
        assert installed.returncode == 0, installed.stderr

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


def test_mark_good_through_the_agent_confirms_the_trial_the_agent_found_healthy(
        tmp_path: Path, swtpm: SoftTpm, images: Images, es256_signer: FileSigner) -> None:
    """The mark-good unit as shipped: `sfu agent mark-good` asks the running agent, which
    recorded this boot (slot, verification, health) when it started; it needs no TPM."""
    config = provisioned(tmp_path, swtpm, images, es256_signer)
    unreachable = sfu("agent", "mark-good", "--socket", str(tmp_path / "agent.sock"),
                      "--wait", "0")
    assert unreachable.returncode == 11 and "cannot reach the agent" in unreachable.stderr
    with serving(config, tmp_path) as sock:
        first = sfu("agent", "mark-good", "--socket", str(sock))
        assert first.returncode == 0, first.stderr
        assert first.stdout.splitlines() == ["slot A runs its confirmed image",
                                             "slot A confirmed sequence 1 floor 1"]
        assert sfu("install", "--socket", str(sock), str(images.v2)).returncode == 0
    # reboot: the bootloader runs B (a new boot ID; here, the old one's marker is dropped)
    (tmp_path / "state" / "reconciled-boot").unlink()
    (tmp_path / "cmdline").write_text("console=ttyS0 sfu.slot=B\n")
    with serving(config, tmp_path) as sock:
        good = sfu("agent", "mark-good", "--socket", str(sock), "--json")
        assert good.returncode == 0, good.stderr
        done = json.loads(good.stdout)
        assert done["confirmed"] is True and done["message"] == "trial slot B confirmed; floor 2"
        assert done["status"]["rollback_floor"] == 2
        again = sfu("agent", "mark-good", "--socket", str(sock))  # the unit runs again: no-op
        assert again.returncode == 0 and "slot B runs its confirmed image" in again.stdout
    status = json.loads(sfu("board", "linux", "status", "--config", str(config),
                            "--json").stdout)
    assert status["bootloader"]["BOOT_ORDER"] == "B"


def test_mark_good_through_the_agent_refuses_a_trial_that_failed_its_health_check(
        tmp_path: Path, swtpm: SoftTpm, images: Images, es256_signer: FileSigner) -> None:
    config = provisioned(tmp_path, swtpm, images, es256_signer)
    with serving(config, tmp_path) as sock:
        assert sfu("install", "--socket", str(sock), str(images.v2)).returncode == 0
    (tmp_path / "state" / "reconciled-boot").unlink()
    (tmp_path / "cmdline").write_text("console=ttyS0 sfu.slot=B\n")
    config.write_text(config.read_text() + '[health]\ncommand = ["/bin/false"]\n')
    with serving(config, tmp_path) as sock:
        refused = sfu("agent", "mark-good", "--socket", str(sock))
    assert refused.returncode == 12, refused.stderr
    assert "slot B runs but is bad" in refused.stderr
    status = json.loads(sfu("board", "linux", "status", "--config", str(config),
                            "--json").stdout)
    assert (status["confirmed_slot"], status["rollback_floor"]) == ("A", 1)
    assert status["bootloader"]["BOOT_ORDER"] == "A"


def test_an_image_encrypted_for_the_tpm_device_installs_there_and_no_other_does(
        tmp_path: Path, swtpm: SoftTpm, images: Images, es256_signer: FileSigner) -> None:
    """On the linux backend the key-agreement key is derived from the identity key kept in
    the TPM-encrypted secure storage: provisioning exports its public half, the agent
    decrypts with it."""
    config = provisioned(tmp_path, swtpm, images, es256_signer)
    exported = tmp_path / "state" / "device-enc.pub.pem"
    shown = sfu("board", "linux", "encryption-key", "--config", str(config), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["pem"] == exported.read_text()

    def encrypted(sequence: int, recipient: ec.EllipticCurvePublicKey) -> Path:
        return encrypted_sfui(tmp_path, es256_signer, sequence, [recipient],
                              f"linux firmware {sequence} ".encode() * 2000)

    stranger = ec.generate_private_key(ec.SECP256R1()).public_key()
    with serving(config, tmp_path) as sock:
        refused = sfu("install", "--socket", str(sock), str(encrypted(3, stranger)))
        assert refused.returncode == 5 and "is encrypted for" in refused.stderr
        installed = sfu("install", "--socket", str(sock),
                        str(encrypted(2, load_recipient_key(exported))))
        assert installed.returncode == 0, installed.stderr
    status = json.loads(sfu("board", "linux", "status", "--config", str(config),
                            "--json").stdout)
    assert status["trial_slot"] == "B" and status["slots"]["B"]["sequence"] == 2


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

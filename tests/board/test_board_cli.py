"""`sfu board ...` end to end in real processes, including the boot ROM running the verified
agent zipapp in its own interpreter."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from sfupdate import keys
from sfupdate.authoring.author import ImageSpec, sign_firmware
from sfupdate.authoring.author.bundle import build_agent_bundle
from sfupdate.formats.sfui.uuids import AGENT_CLASS, AGENT_VENDOR
from sfupdate.keys.files import FileSigner
from sfupdate.secure.agent.device import Device
from sfupdate.secure.agent.install import install
from sfupdate.secure.board.hal import Slot
from sfupdate.secure.board.power import POWER_CUT_EXIT
from tests.board.conftest import Images
from tests.world import fresh

SFU = [sys.executable, "-m", "sfupdate.cli.main"]


def sfu(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SFU_SIM_POWER_CUT_AT"}
    return subprocess.run([*SFU, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def status(board: Path) -> dict[str, object]:
    proc = sfu("board", "status", board, "--json")
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_create_provision_boot_trial_confirm(tmp_path: Path, images: Images,
                                             es256_signer: FileSigner) -> None:
    pub = tmp_path / "fw.pub"
    pub.write_bytes(keys.public_pem(es256_signer.public_key))
    board = tmp_path / "board"
    assert sfu("board", "create", board, "--slot-size", "64KiB").returncode == 0
    proc = sfu("board", "provision", board, "--trust", pub, "--vendor", "example.com",
               "--class", "demo-board", "--firmware", images.v1)
    assert proc.returncode == 0, proc.stderr
    assert (board / "device-id.pub.pem").read_bytes().startswith(b"-----BEGIN PUBLIC KEY")
    again = sfu("board", "provision", board, "--trust", pub, "--vendor", "example.com",
                "--class", "demo-board", "--firmware", images.v1)
    assert again.returncode == 12 and again.stderr.count("\n") == 1
    assert "booted slot A (confirmed), sequence 1" in sfu("board", "boot", board).stdout

    with open(images.v2, "rb") as f:
        install(Device(fresh(board)), f)
    proc = sfu("board", "boot", board, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["slot"] == "B"
    assert status(board)["rollback_floor"] == 1
    assert sfu("board", "confirm", board).returncode == 0
    assert status(board)["rollback_floor"] == 2 and status(board)["confirmed_slot"] == "B"
    nothing = sfu("board", "confirm", board)
    assert nothing.returncode == 12 and "no image on trial" in nothing.stderr


def test_board_confirm_measures_the_trial_again(tmp_path: Path, images: Images,
                                                es256_signer: FileSigner) -> None:
    """`sfu board confirm` is the agent's confirm: a trial edited after its boot is marked
    bad, not confirmed (tests/attacks/test_tampered_slot_at_rest.py has the attack)."""
    pub = tmp_path / "fw.pub"
    pub.write_bytes(keys.public_pem(es256_signer.public_key))
    board = tmp_path / "board"
    assert sfu("board", "create", board, "--slot-size", "64KiB").returncode == 0
    assert sfu("board", "provision", board, "--trust", pub, "--vendor", "example.com",
               "--class", "demo-board", "--firmware", images.v1).returncode == 0
    with open(images.v2, "rb") as f:
        install(Device(fresh(board)), f)
    assert sfu("board", "boot", board).returncode == 0
    with open(board / "slots" / "B.img", "r+b") as slot:
        slot.seek(100)
        byte = slot.read(1)
        slot.seek(100)
        slot.write(bytes([byte[0] ^ 0x40]))
    proc = sfu("board", "confirm", board)
    assert proc.returncode == 16 and proc.stderr.count("\n") == 1, proc.stderr
    assert "marked bad" in proc.stderr
    assert status(board)["rollback_floor"] == 1


def _spki(signer: FileSigner) -> bytes:
    return signer.public_key.public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def _flip_payload_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # inside the zipapp payload, the last member of the envelope
    path.write_bytes(bytes(data))


def test_tampered_agent_bundle_does_not_start(board_dir: Path, images: Images) -> None:
    with open(images.v2, "rb") as f:
        install(Device(fresh(board_dir)), f)
    _flip_payload_byte(board_dir / "agent" / "A" / "agent.sfui")
    proc = sfu("board", "boot", board_dir)
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.startswith("sfu: error:") and proc.stderr.count("\n") == 1
    assert status(board_dir)["trial_tries_left"] == 3  # stage 2 never ran: no try was used


def _put_bundle(board_dir: Path, data: bytes, spki: bytes) -> None:
    """What an attacker with access to the flash can do: rewrite agent partition A."""
    with fresh(board_dir).agent.writer(Slot.A, spki) as writer:
        writer.write(data)
        writer.finish()


def test_agent_bundle_signed_by_another_key_does_not_start(board_dir: Path,
                                                           es256_signer: FileSigner) -> None:
    _put_bundle(board_dir, build_agent_bundle(es256_signer), _spki(es256_signer))
    proc = sfu("board", "boot", board_dir)
    assert proc.returncode == 4 and "root-key hash" in proc.stderr


def test_another_bundle_signed_by_the_fused_key_does_not_start_unrecorded(
        board_dir: Path, agent_signer: FileSigner) -> None:
    """Even a genuine bundle (say an older one) written over the confirmed partition does not
    run: it is not the bundle secure storage recorded there."""
    _put_bundle(board_dir, build_agent_bundle(agent_signer, sequence=7), _spki(agent_signer))
    proc = sfu("board", "boot", board_dir)
    assert proc.returncode == 4 and "not hold the bundle recorded" in proc.stderr


def test_boot_runs_exactly_the_verified_bundle(board_dir: Path, tmp_path: Path,
                                               agent_signer: FileSigner) -> None:
    """A bundle signed with the fused key runs; what runs is its code, not the installed one."""
    app = tmp_path / "marker.pyz"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("__main__.py", "import json\nprint(json.dumps({'slot': 'from-bundle', "
                    "'trial': False, 'sequence': 0, 'version': None, 'healthy': True}))\n")
    app.write_bytes(buffer.getvalue())
    out = tmp_path / "marker.sfui"
    sign_firmware(app, out, agent_signer, ImageSpec(2, AGENT_VENDOR, AGENT_CLASS))
    with open(out, "rb") as f:  # an agent update, through the agent's install
        assert install(Device(fresh(board_dir)), f).component == "agent"
    proc = sfu("board", "boot", board_dir, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["slot"] == "from-bundle"


@pytest.mark.parametrize("cut_at", [3, 10])  # 3: in the ROM process; 10: in stage 2
def test_power_cut_knob_cuts_the_boot_and_the_next_boot_works(board_dir: Path,
                                                              images: Images,
                                                              cut_at: int) -> None:
    with open(images.v2, "rb") as f:
        install(Device(fresh(board_dir)), f)
    (board_dir / "power-cut-at").write_text(str(cut_at))
    proc = sfu("board", "boot", board_dir)
    assert proc.returncode == POWER_CUT_EXIT and "power cut at write" in proc.stderr
    assert not (board_dir / "power-cut-at").exists()  # one-shot
    proc = sfu("board", "boot", board_dir, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["slot"] == "B"


def test_bad_slot_size_is_a_usage_error(tmp_path: Path) -> None:
    proc = sfu("board", "create", tmp_path / "b", "--slot-size", "lots")
    assert proc.returncode == 2 and proc.stderr.startswith("sfu: error: bad size")

"""The agent is a component too: a bundle signed by the key the ROM trusts goes into the
inactive agent partition through the agent's install, runs once on trial, and becomes the
agent only if it confirms itself during that boot; it has its own rollback floor; a power cut
at any write leaves a bootable, authentic agent."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sfupdate import errors
from sfupdate.authoring.author import ImageSpec, sign_firmware
from sfupdate.authoring.author.bundle import build_agent_bundle
from sfupdate.authoring.author.encrypt import PayloadEncryption
from sfupdate.formats.sfui.uuids import AGENT_CLASS, AGENT_VENDOR
from sfupdate.keys.files import FileSigner
from sfupdate.secure.agent.device import Device
from sfupdate.secure.agent.install import install
from sfupdate.secure.board.hal import Slot
from sfupdate.secure.board.power import PowerCut
from sfupdate.secure.boot.rom import boot, run_bundle
from sfupdate.secure.kernel import Kernel, SecureState
from tests.board.conftest import CopyBoard
from tests.world import fresh, reboot


def _state(board_dir: Path) -> SecureState:
    return Kernel(fresh(board_dir).storage).state()


def _install(board_dir: Path, data: bytes, cut_at: int | None = None) -> str:
    return install(Device(fresh(board_dir, cut_at)), io.BytesIO(data)).component


@pytest.fixture(scope="module")
def bundle_v2(agent_signer: FileSigner) -> bytes:
    return build_agent_bundle(agent_signer, sequence=2)


def test_a_new_bundle_runs_once_on_trial_and_confirms_itself(board_dir: Path,
                                                             bundle_v2: bytes) -> None:
    assert _install(board_dir, bundle_v2) == "agent"
    agent = _state(board_dir).agent
    assert (agent.active, agent.trial, agent.tried, agent.floor) == (Slot.A, Slot.B, False, 1)
    result = reboot(board_dir)
    assert "agent bundle 2 in partition B confirmed itself" in result.events
    agent = _state(board_dir).agent
    assert (agent.active, agent.trial, agent.floor) == (Slot.B, None, 2)
    reboot(board_dir)  # and it keeps running the new bundle
    assert _state(board_dir).measured.digests("agent")[-1] == agent.active_bundle.digest


def test_an_older_bundle_is_refused_and_changes_nothing(board_dir: Path, bundle_v2: bytes,
                                                        agent_signer: FileSigner) -> None:
    _install(board_dir, bundle_v2)
    reboot(board_dir)  # floor 2
    before = _state(board_dir)
    for sequence in (1, 2):
        with pytest.raises(errors.DowngradeError, match="agent's rollback floor"):
            _install(board_dir, build_agent_bundle(agent_signer, sequence=sequence))
    assert _state(board_dir) == before


def test_a_bundle_signed_by_a_firmware_key_is_refused(board_dir: Path,
                                                      es256_signer: FileSigner) -> None:
    before = _state(board_dir)
    with pytest.raises(errors.UnknownKeyError, match="fused in OTP"):
        _install(board_dir, build_agent_bundle(es256_signer, sequence=5))
    assert _state(board_dir) == before


def test_an_encrypted_bundle_is_refused_before_a_byte_is_written(
        board_dir: Path, tmp_path: Path, agent_signer: FileSigner) -> None:
    app, signed = tmp_path / "agent.pyz", tmp_path / "agent.sfui"
    app.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: never reached
    recipient = ec.generate_private_key(ec.SECP256R1()).public_key()
    sign_firmware(app, signed, agent_signer, ImageSpec(5, AGENT_VENDOR, AGENT_CLASS),
                  encryption=PayloadEncryption([recipient]))
    before = (_state(board_dir), (board_dir / "agent" / "B").exists()
              and sorted((board_dir / "agent" / "B").iterdir()))
    with pytest.raises(errors.UnsupportedError, match="cannot be encrypted"):
        _install(board_dir, signed.read_bytes())
    assert (_state(board_dir), (board_dir / "agent" / "B").exists()
            and sorted((board_dir / "agent" / "B").iterdir())) == before


def test_a_bundle_that_never_confirms_is_dropped_at_the_next_boot(
        board_dir: Path, tmp_path: Path, agent_signer: FileSigner) -> None:
    """A new agent whose stage 2 dies before it confirms itself (here: a zipapp that exits at
    once) runs once; the next boot runs the confirmed agent again."""
    app = tmp_path / "broken.pyz"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("__main__.py", "raise SystemExit(3)\n")
    app.write_bytes(buffer.getvalue())
    signed = tmp_path / "broken.sfui"
    sign_firmware(app, signed, agent_signer, ImageSpec(5, AGENT_VENDOR, AGENT_CLASS))
    _install(board_dir, signed.read_bytes())
    board = fresh(board_dir)
    with pytest.raises(errors.SfuError, match="agent bundle failed"):
        boot(board, run_bundle(board_dir))  # the real stage 2: the broken bundle's code
    assert _state(board_dir).agent.tried
    result = boot(fresh(board_dir), run_bundle(board_dir))
    assert (result.slot, result.healthy) == ("A", True)
    agent = _state(board_dir).agent
    assert (agent.active, agent.trial, agent.floor, agent.bundle(Slot.B)) == (Slot.A, None, 1,
                                                                            None)


def test_a_tampered_bundle_on_trial_falls_back_to_the_confirmed_one(board_dir: Path,
                                                                    bundle_v2: bytes) -> None:
    _install(board_dir, bundle_v2)
    path = board_dir / "agent" / "B" / "agent.sfui"
    data = bytearray(path.read_bytes())
    data[-50] ^= 0x01
    path.write_bytes(bytes(data))
    assert reboot(board_dir).slot == "A"
    agent = _state(board_dir).agent
    assert (agent.active, agent.trial, agent.floor) == (Slot.A, None, 1)


def test_power_cut_at_every_write_of_an_agent_update_leaves_a_bootable_agent(
        fresh_board: CopyBoard, bundle_v2: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    probe = fresh_board()
    board = fresh(probe)
    install(Device(board), io.BytesIO(bundle_v2))
    reboot(board)
    total = board.power.ops
    shutil.rmtree(probe)
    for cut in range(1, total + 1):
        path = fresh_board()
        board = fresh(path, cut)
        try:
            install(Device(board), io.BytesIO(bundle_v2))
            reboot(board)
        except PowerCut:
            pass
        at_cut = _state(path).agent
        result = reboot(path)  # must boot an authentic agent and firmware
        after = _state(path).agent
        assert result.healthy and after.floor >= at_cut.floor >= 1
        assert after.floor in (1, 2) and after.active_bundle.sequence == after.floor
        assert _state(path).measured.digests("agent")[-1] in (
            b.digest for b in after.bundles if b is not None)
        shutil.rmtree(path)
    with capsys.disabled():
        print(f"\n[power-cut] agent update: cut at each of {total} write points; every reboot "
              "ran an authentic agent at or above its floor")


def test_an_agent_update_end_to_end_through_the_command_line(tmp_path: Path,
                                                             socket_dir: Path) -> None:
    """`sfu agent bundle` signs it, `sfu install` hands it to the running agent, `sfu board
    boot` runs the new bundle's own stage 2 (a real interpreter on the verified zipapp), and
    `sfu board status` shows it confirmed."""
    from sfupdate import keys
    from tests.agent.support import start_agent, stop_agent
    from tests.board.test_board_cli import sfu, status
    from tests.world import FIRMWARE_V1, SLOT_SIZE

    author, rom = tmp_path / "author.key", tmp_path / "rom.key"
    for key in (author, rom):
        keys.write_private_key(keys.generate_private_key("ESP256"), key)
    assert sfu("keys", "public", author, "-o", tmp_path / "author.pub").returncode == 0
    (tmp_path / "v1.bin").write_bytes(FIRMWARE_V1)
    board = tmp_path / "board"
    steps = [("sign", tmp_path / "v1.bin", "--key", author, "--sequence", "1", "--vendor",
              "example.com", "--class", "demo-board", "-o", tmp_path / "v1.sfui"),
             ("board", "create", board, "--slot-size", str(SLOT_SIZE)),
             ("board", "provision", board, "--trust", tmp_path / "author.pub", "--vendor",
              "example.com", "--class", "demo-board", "--firmware", tmp_path / "v1.sfui",
              "--agent-key", rom),
             ("agent", "bundle", "--key", rom, "--sequence", "2", "-o", tmp_path / "a2.sfui")]
    for step in steps:
        proc = sfu(*step)
        assert proc.returncode == 0, proc.stderr
    agent = start_agent(board, socket_dir)
    try:
        proc = sfu("install", tmp_path / "a2.sfui", "--socket", agent.socket)
        assert proc.returncode == 0, proc.stderr
    finally:
        stop_agent(agent)
    assert status(board)["agent"] == {"active": "A", "floor": 1, "trial": "B", "sequence": 1}
    proc = sfu("board", "boot", board)
    assert proc.returncode == 0 and "agent bundle 2 in partition B confirmed itself" in \
        proc.stdout, proc.stderr
    assert status(board)["agent"] == {"active": "B", "floor": 2, "trial": None, "sequence": 2}

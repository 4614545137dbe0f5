"""`sfu agent ...` and `sfu install` against a real agent: output, one-line refusals, and the
documented exit codes."""

from __future__ import annotations

import json
import shutil
import socket
import struct
from pathlib import Path

import pytest

from sfupdate.cli.main import main
from sfupdate.formats.sfui import cbor, class_uuid, vendor_uuid
from sfupdate.keys.files import FileSigner
from sfupdate.secure.board.sim import create_board
from tests.agent.support import RunningAgent, start_agent, stop_agent
from tests.conftest import SignImage
from tests.world import SLOT_SIZE, reboot

FIRMWARE_V2 = b"firmware v2 " * 2000


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys: pytest.CaptureFixture[str], code: int, *args: str | Path) -> str:
    got, out, err = run(capsys, *args)
    assert out == ""
    assert got == code, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sfu: error: "), err
    return lines[0]


def test_install_then_status_shows_the_trial(agent: RunningAgent, sign_image: SignImage,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    image = sign_image(payload=FIRMWARE_V2, sequence=2)
    code, out, _ = run(capsys, "install", image, "--socket", agent.socket)
    assert code == 0
    assert "installed sequence 2 into slot B as a trial" in out
    code, out, _ = run(capsys, "agent", "status", "--socket", agent.socket)
    assert code == 0
    assert "slot B, 3 tries left" in out and "rollback floor   1" in out
    code, out, _ = run(capsys, "agent", "status", "--socket", agent.socket, "--json")
    status = json.loads(out)
    assert status["trial_slot"] == "B" and status["slots"]["B"]["sequence"] == 2


def test_confirm_and_reject_trial_commands(agent: RunningAgent, sign_image: SignImage,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "install", sign_image(payload=FIRMWARE_V2, sequence=2),
               "--socket", agent.socket, "--json")[0] == 0
    reboot(agent.board)
    code, out, _ = run(capsys, "agent", "confirm", "--socket", agent.socket, "--json")
    assert code == 0 and json.loads(out)["rollback_floor"] == 2
    assert run(capsys, "install", sign_image(payload=FIRMWARE_V2 * 2, sequence=3),
               "--socket", agent.socket)[0] == 0
    code, out, _ = run(capsys, "agent", "reject-trial", "--socket", agent.socket)
    assert code == 0 and "trial            -" in out


@pytest.mark.parametrize(("kwargs", "code", "words"), [
    ({"sequence": 1}, 7, "not above 1"),
    ({"sequence": 2, "vendor": vendor_uuid("evil.example"),
      "klass": class_uuid(vendor_uuid("evil.example"), "demo-board")}, 5, "vendor"),
    ({"sequence": 2, "klass": class_uuid(vendor_uuid("example.com"), "x")}, 5, "class"),
    ({"sequence": 2, "payload": b"\x00" * (SLOT_SIZE + 4096)}, 8, "does not fit"),
], ids=["downgrade", "vendor", "class", "too-big"])
def test_each_refusal_has_its_line_and_exit_code(
        agent: RunningAgent, sign_image: SignImage, capsys: pytest.CaptureFixture[str],
        kwargs: dict[str, object], code: int, words: str) -> None:
    line = refused(capsys, code, "install", sign_image(**kwargs), "--socket", agent.socket)
    assert words in line


def test_unauthentic_image_exits_4(agent: RunningAgent, sign_image: SignImage,
                                   eddsa_signer: FileSigner,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    refused(capsys, 4, "install", sign_image(sequence=2, signer=eddsa_signer),
            "--socket", agent.socket)


def test_busy_agent_exits_9(agent: RunningAgent, sign_image: SignImage,
                            capsys: pytest.CaptureFixture[str]) -> None:
    body = cbor.dumps({"op": "install-begin", "size": None})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as holder:
        holder.connect(str(agent.socket))
        holder.sendall(struct.pack(">I", len(body)) + body)
        holder.recv(64)  # ready: the session is open and held
        line = refused(capsys, 9, "install", sign_image(sequence=2), "--socket", agent.socket)
    assert "in progress" in line


def test_rolled_back_storage_exits_10(agent: RunningAgent, sign_image: SignImage,
                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(agent.board / "secure", tmp_path / "old")
    assert run(capsys, "install", sign_image(sequence=2), "--socket", agent.socket)[0] == 0
    shutil.rmtree(agent.board / "secure")
    shutil.copytree(tmp_path / "old", agent.board / "secure")
    refused(capsys, 10, "agent", "status", "--socket", agent.socket)


def test_unreachable_agent_exits_11(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, 11, "agent", "status", "--socket", tmp_path / "nobody.sock")
    assert "cannot reach the agent" in line


def test_confirm_without_trial_exits_12(agent: RunningAgent,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    refused(capsys, 12, "agent", "confirm", "--socket", agent.socket)


def test_serve_refuses_a_socket_another_agent_listens_on(
        agent: RunningAgent, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other_board = tmp_path / "other-board"  # another board: its lock is free
    shutil.copytree(agent.board, other_board)
    line = refused(capsys, 2, "agent", "serve", "--board", other_board, "--socket",
                   agent.socket)
    assert "already listening" in line


def test_serve_refuses_a_board_another_agent_serves(
        agent: RunningAgent, socket_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, 9, "agent", "serve", "--board", agent.board, "--socket",
                   socket_dir / "other.sock")
    assert "already served by another agent" in line


def test_serve_refuses_to_replace_a_file_that_is_not_a_socket(
        board_dir: Path, socket_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    victim = socket_dir / "important.txt"
    victim.write_text("keep me")
    refused(capsys, 2, "agent", "serve", "--board", board_dir, "--socket", victim)
    assert victim.read_text() == "keep me"


def test_serve_refuses_an_unprovisioned_board(tmp_path: Path, socket_dir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    create_board(tmp_path / "blank", SLOT_SIZE)
    refused(capsys, 12, "agent", "serve", "--board", tmp_path / "blank",
            "--socket", socket_dir / "a.sock")
    assert not (socket_dir / "a.sock").exists()


def test_agent_stops_cleanly_on_sigterm_and_removes_its_socket(board_dir: Path,
                                                               socket_dir: Path) -> None:
    agent = start_agent(board_dir, socket_dir)
    try:
        agent.client().status()
    finally:
        stop_agent(agent)
    assert agent.proc.returncode == 0
    assert not agent.socket.exists()

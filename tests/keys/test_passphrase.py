"""Passphrase-encrypted PEM keys: made by `sfu keys generate --encrypt`, opened with
--passphrase-file, SFU_KEY_PASSPHRASE or a prompt on a terminal (a real pseudo-terminal
here), and refused with one line when the passphrase is missing or wrong."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sfupdate import errors, keys
from sfupdate.formats.sfui import EnvelopeReader
from tests.afterattack.support import refused, run

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(PASSPHRASE + "\n")
    return path


@pytest.fixture
def encrypted_key(tmp_path: Path, passphrase_file: Path,
                  capsys: pytest.CaptureFixture[str]) -> Path:
    key = tmp_path / "author.key"
    code, out, err = run(capsys, "keys", "generate", "--encrypt", "--passphrase-file",
                         passphrase_file, "-o", key, "--json")
    assert code == 0, err
    assert json.loads(out)["encrypted"] is True
    return key


def _sign_args(tmp_path: Path, key: Path) -> list[str | Path]:
    firmware = tmp_path / "fw.bin"
    firmware.write_bytes(b"firmware" * 100)
    return ["sign", firmware, "--key", key, "--sequence", "4", "--vendor", "example.com",
            "--class", "demo-board", "-o", tmp_path / "fw.sfui", "--force"]


def test_an_encrypted_key_holds_no_clear_key_and_signs_with_its_passphrase(
        tmp_path: Path, encrypted_key: Path, passphrase_file: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    pem = encrypted_key.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert encrypted_key.stat().st_mode & 0o777 == 0o600
    code, _, err = run(capsys, *_sign_args(tmp_path, encrypted_key), "--passphrase-file",
                       passphrase_file)
    assert code == 0, err
    code, _, err = run(capsys, "keys", "public", encrypted_key, "--passphrase-file",
                       passphrase_file, "-o", tmp_path / "author.pub")
    assert code == 0, err
    with (tmp_path / "fw.sfui").open("rb") as f:
        EnvelopeReader(f).authenticate([keys.load_public_key(tmp_path / "author.pub")])


def test_the_passphrase_from_the_environment(tmp_path: Path, encrypted_key: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SFU_KEY_PASSPHRASE", PASSPHRASE)
    assert run(capsys, *_sign_args(tmp_path, encrypted_key))[0] == 0


def test_a_missing_or_wrong_passphrase_is_one_line_exit_6(
        tmp_path: Path, encrypted_key: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SFU_KEY_PASSPHRASE", raising=False)
    line = refused(capsys, 6, *_sign_args(tmp_path, encrypted_key))  # stdin is no terminal
    assert "is an encrypted private key" in line and "--passphrase-file" in line
    wrong = tmp_path / "wrong"
    wrong.write_text("not it\n")
    line = refused(capsys, 6, *_sign_args(tmp_path, encrypted_key), "--passphrase-file", wrong)
    assert "wrong passphrase" in line
    empty = tmp_path / "empty"
    empty.write_text("")
    assert "is empty" in refused(capsys, 6, *_sign_args(tmp_path, encrypted_key),
                                 "--passphrase-file", empty)
    operator: list[str | Path] = [
        "remote", "sign", "--key", encrypted_key, "--action", "reboot", "--vendor",
        "example.com", "--class", "demo-board", "--number", "1", "-o", tmp_path / "cmd.cose"]
    assert "wrong passphrase" in refused(capsys, 6, *operator, "--passphrase-file", wrong)
    assert run(capsys, *operator, "--passphrase-file", tmp_path / "passphrase")[0] == 0


def test_generate_encrypt_without_a_passphrase_source_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SFU_KEY_PASSPHRASE", raising=False)
    line = refused(capsys, 2, "keys", "generate", "--encrypt", "-o", tmp_path / "k.pem")
    assert "--passphrase-file" in line
    assert not (tmp_path / "k.pem").exists()
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(PASSPHRASE)
    line = refused(capsys, 2, "keys", "generate", "--passphrase-file", passphrase, "-o",
                   tmp_path / "k.pem")
    assert "--encrypt" in line
    assert not (tmp_path / "k.pem").exists()


def _on_a_terminal(args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run `sfu ARGS` with a pseudo-terminal as its controlling terminal, typing each answer
    after a prompt (output ending in ": "); (exit code, everything it printed)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: sfu on the terminal
        env = {k: v for k, v in os.environ.items() if k != "SFU_KEY_PASSPHRASE"}
        os.execve(sys.executable, [sys.executable, "-m", "sfupdate.cli.main", *args], env)
    seen, pending = b"", list(answers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 1)[0]:
            continue
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
        if pending and chunk.endswith(b": "):
            os.write(fd, pending.pop(0).encode() + b"\n")
    else:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


def test_on_a_terminal_the_passphrase_is_asked_twice_then_once(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    code, shown = _on_a_terminal(["keys", "generate", "--encrypt", "-o", str(key)],
                                 [PASSPHRASE, PASSPHRASE])
    assert code == 0, shown
    assert "New passphrase" in shown and "Repeat" in shown and PASSPHRASE not in shown
    assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    code, shown = _on_a_terminal(["keys", "public", str(key)], [PASSPHRASE])
    assert code == 0, shown
    assert f"Passphrase for {key}" in shown and "BEGIN PUBLIC KEY" in shown
    code, shown = _on_a_terminal(["keys", "generate", "--encrypt", "-o", str(tmp_path / "b")],
                                 [PASSPHRASE, "a typo"])
    assert code == errors.UsageError.exit_code and "differ" in shown
    assert not (tmp_path / "b").exists()


def test_an_unencrypted_key_needs_no_passphrase(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "plain.key"
    assert run(capsys, "keys", "generate", "-o", key)[0] == 0
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert run(capsys, *_sign_args(tmp_path, key))[0] == 0
    assert subprocess.run([sys.executable, "-m", "sfupdate.cli.main", "keys", "public",
                           str(key)], capture_output=True, timeout=60).returncode == 0


def test_an_encrypted_agent_key_provisions_and_signs_bundles(
        tmp_path: Path, encrypted_key: Path, passphrase_file: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.world import FIRMWARE_V1, SLOT_SIZE

    monkeypatch.delenv("SFU_KEY_PASSPHRASE", raising=False)
    author = tmp_path / "author.plain.key"
    assert run(capsys, "keys", "generate", "-o", author)[0] == 0
    assert run(capsys, "keys", "public", author, "-o", tmp_path / "author.pub")[0] == 0
    (tmp_path / "v1.bin").write_bytes(FIRMWARE_V1)
    assert run(capsys, "sign", tmp_path / "v1.bin", "--key", author, "--sequence", "1",
               "--vendor", "example.com", "--class", "demo-board", "-o",
               tmp_path / "v1.sfui")[0] == 0
    board = tmp_path / "board"
    assert run(capsys, "board", "create", board, "--slot-size", str(SLOT_SIZE))[0] == 0
    provision: list[str | Path] = [
        "board", "provision", board, "--trust", tmp_path / "author.pub", "--vendor",
        "example.com", "--class", "demo-board", "--firmware", tmp_path / "v1.sfui",
        "--agent-key", encrypted_key]
    assert "is an encrypted private key" in refused(capsys, 6, *provision)
    code, _, err = run(capsys, *provision, "--passphrase-file", passphrase_file)
    assert code == 0, err
    bundle: list[str | Path] = ["agent", "bundle", "--key", encrypted_key, "--sequence", "2",
                                "-o", tmp_path / "a2.sfui"]
    assert "is an encrypted private key" in refused(capsys, 6, *bundle)
    code, _, err = run(capsys, *bundle, "--passphrase-file", passphrase_file)
    assert code == 0, err
    assert (tmp_path / "a2.sfui").stat().st_size > 0

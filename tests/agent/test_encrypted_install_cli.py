"""Encrypted payloads as an operator does it, command by command: provisioning exports the
device's encryption key, `sfu sign --encrypt-for` encrypts for it, `sfu install` installs it;
an image encrypted for another key is refused in one line with the documented exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sfupdate import errors
from tests.agent.support import start_agent, stop_agent
from tests.agent.test_agent_cli import refused, run


def test_provision_export_sign_for_the_device_and_install(
        tmp_path: Path, socket_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    board, fw = tmp_path / "board", tmp_path / "fw.bin"
    files = {name: tmp_path / name for name in ("author.key", "author.pub", "fleet.kek",
                                                 "other.kek", "dev.pub")}
    assert run(capsys, "board", "create", board, "--slot-size", "256KiB")[0] == 0
    assert run(capsys, "keys", "generate", "-o", files["author.key"])[0] == 0
    assert run(capsys, "keys", "public", files["author.key"], "-o", files["author.pub"])[0] == 0
    for kek in ("fleet.kek", "other.kek"):
        assert run(capsys, "keys", "generate-kek", "-o", files[kek])[0] == 0

    def sign(sequence: int, *encrypt: str | Path) -> Path:
        fw.write_bytes(f"firmware {sequence} ".encode() * 3000)
        out = tmp_path / f"v{sequence}.sfui"
        code, _, err = run(capsys, "sign", fw, "--key", files["author.key"], "--sequence",
                           str(sequence), "--vendor", "example.com", "--class", "demo-board",
                           *encrypt, "-o", out, "--force")
        assert code == 0, err
        return out

    short = tmp_path / "short.kek"
    short.write_text("00112233\n")
    provision: list[str | Path] = [
        "board", "provision", board, "--trust", files["author.pub"], "--vendor", "example.com",
        "--class", "demo-board", "--firmware", sign(1)]
    assert "16 bytes" in refused(capsys, errors.UsageError.exit_code, *provision,
                                 "--payload-kek", short)
    code, out, err = run(capsys, *provision, "--payload-kek", files["fleet.kek"])
    assert code == 0, err
    assert f"encryption key {board / 'device-enc.pub.pem'}" in out
    code, out, _ = run(capsys, "board", "encryption-key", board, "-o", files["dev.pub"],
                       "--json")
    assert code == 0 and json.loads(out)["algorithm"] == "ECDH-ES+A128KW"
    assert files["dev.pub"].read_bytes() == (board / "device-enc.pub.pem").read_bytes()

    agent = start_agent(board, socket_dir)
    try:
        line = refused(capsys, errors.NotARecipientError.exit_code, "install",
                       sign(2, "--encrypt-kek", files["other.kek"]), "--socket", agent.socket)
        assert "is encrypted for" in line
        code, out, err = run(capsys, "install", sign(2, "--encrypt-for", files["dev.pub"]),
                             "--socket", agent.socket)
        assert code == 0, err
        assert "installed sequence 2 into slot B" in out
        code, out, err = run(capsys, "install", sign(3, "--encrypt-kek", files["fleet.kek"],
                                                     "--encrypt-alg", "A256GCM"),
                             "--socket", agent.socket)
        assert code == 0, err
        assert "installed sequence 3" in out
    finally:
        stop_agent(agent)
    assert "not a board" in refused(capsys, errors.UsageError.exit_code, "board",
                                    "encryption-key", tmp_path / "nowhere")

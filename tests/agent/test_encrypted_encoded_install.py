"""Compressed or delta payloads that are also encrypted, as an operator makes and installs
them: `sfu sign --compress zstd --encrypt-for DEV.pub` and `sfu sign --delta-from OLD.sfui
--encrypt-kek FLEET.kek`. The encoded payload is what is encrypted; the agent decrypts,
decodes, and checks the signed digest of the image before it records a trial. A flipped
ciphertext byte is refused and records nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from sfupdate import errors
from sfupdate.secure.board.sim import open_board
from sfupdate.secure.kernel import Kernel
from tests.agent.support import start_agent, stop_agent
from tests.agent.test_agent_cli import refused, run


def test_compressed_and_delta_payloads_encrypted_for_the_device_install(
        tmp_path: Path, socket_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    board, fw = tmp_path / "board", tmp_path / "fw.bin"
    key, pub, kek = tmp_path / "author.key", tmp_path / "author.pub", tmp_path / "fleet.kek"
    assert run(capsys, "board", "create", board, "--slot-size", "256KiB")[0] == 0
    assert run(capsys, "keys", "generate", "-o", key)[0] == 0
    assert run(capsys, "keys", "public", key, "-o", pub)[0] == 0
    assert run(capsys, "keys", "generate-kek", "-o", kek)[0] == 0

    def sign(sequence: int, *options: str | Path) -> Path:
        fw.write_bytes(b"".join(f"firmware {sequence} block {i:05d} ".encode()
                                for i in range(4000)))
        out = tmp_path / f"v{sequence}{len(options)}.sfui"
        code, _, err = run(capsys, "sign", fw, "--key", key, "--sequence", str(sequence),
                           "--vendor", "example.com", "--class", "demo-board", *options,
                           "-o", out, "--force")
        assert code == 0, err
        return out

    v1 = sign(1)
    code, _, err = run(capsys, "board", "provision", board, "--trust", pub, "--vendor",
                       "example.com", "--class", "demo-board", "--firmware", v1,
                       "--payload-kek", kek)
    assert code == 0, err
    device_pub = board / "device-enc.pub.pem"
    compressed = sign(2, "--compress", "zstd", "--encrypt-for", device_pub)
    delta = sign(3, "--delta-from", v1, "--encrypt-kek", kek)
    assert compressed.stat().st_size < fw.stat().st_size // 4
    assert delta.stat().st_size < fw.stat().st_size // 4

    code, out, err = run(capsys, "verify", compressed, "--key", pub, "--json")
    assert code == 0, err
    bad_tag, bad_body = tmp_path / "bad-tag.sfui", tmp_path / "bad-body.sfui"
    for damaged, at in ((bad_tag, -3), (bad_body, -400)):  # the tag is the last 16 bytes
        data = bytearray(compressed.read_bytes())
        data[at] ^= 0x01
        damaged.write_bytes(bytes(data))

    agent = start_agent(board, socket_dir)
    try:
        before = Kernel(open_board(board).storage).state().boot
        assert "tag" in refused(capsys, errors.CiphertextTagError.exit_code, "install",
                                bad_tag, "--socket", agent.socket)
        # decrypted bytes that were flipped reach the decoder before the tag is checked (as
        # a plain compressed payload's reach it before its digest): refused either way
        code, _, err = run(capsys, "install", bad_body, "--socket", agent.socket)
        assert code in (errors.FormatError.exit_code, errors.AuthenticationError.exit_code)
        assert err.count("\n") == 1, err
        after = Kernel(open_board(board).storage).state().boot
        assert after.trial is None  # B was marked invalid before its first byte, no more
        assert (after.confirmed, after.floor) == (before.confirmed, before.floor)
        code, out, err = run(capsys, "install", compressed, "--socket", agent.socket)
        assert code == 0, err
        assert "installed sequence 2 into slot B" in out
        code, out, err = run(capsys, "install", delta, "--socket", agent.socket)
        assert code == 0, err
        assert "installed sequence 3 into slot B" in out
    finally:
        stop_agent(agent)


def test_a_delta_is_not_made_from_an_encrypted_sfui(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fw, key, kek = tmp_path / "fw.bin", tmp_path / "author.key", tmp_path / "fleet.kek"
    assert run(capsys, "keys", "generate", "-o", key)[0] == 0
    assert run(capsys, "keys", "generate-kek", "-o", kek)[0] == 0
    fw.write_bytes(b"firmware " * 1000)
    common: list[str | Path] = ["--key", key, "--vendor", "example.com", "--class", "b"]
    old, new = tmp_path / "old.sfui", tmp_path / "new.sfui"
    assert run(capsys, "sign", fw, *common, "--sequence", "1", "--encrypt-kek", kek,
               "-o", old)[0] == 0
    line = refused(capsys, errors.UsageError.exit_code, "sign", fw, *common, "--sequence",
                   "2", "--delta-from", old, "-o", new)
    assert "is encrypted" in line

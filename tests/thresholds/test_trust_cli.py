"""The whole story on the command line, against a real agent process: an operator makes a
trust update with `sfu remote trust-sign`, another key holder adds a signature with
`sfu remote trust-cosign`, `sfu client trust` carries it to the agent; `sfu sign --key A
--key B` makes firmware with several signatures and `sfu install` installs it. Refusals are
one line with the documented exit code, and change nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sfupdate import errors
from sfupdate.secure.board.records import Role
from tests.afterattack.support import refused, run, serve_agent
from tests.thresholds.conftest import Signers, state, unchanged

TARGET = ["--vendor", "example.com", "--class", "demo-board"]


def _sign_update(capsys: pytest.CaptureFixture[str], signers: Signers, out: Path,
                 version: int, by: list[str], anchors: list[str], threshold: int) -> None:
    args: list[str | Path] = ["remote", "trust-sign", *TARGET, "--version", str(version),
                              "--firmware-threshold", str(threshold), "-o", out]
    for name in by:
        args += ["--key", signers.key(name)]
    for name in anchors:
        args += ["--firmware", signers.pub(name)]
    code, _, err = run(capsys, *args)
    assert code == 0, err


def _sign_image(capsys: pytest.CaptureFixture[str], signers: Signers, tmp: Path,
                sequence: int, by: list[str]) -> Path:
    firmware, out = tmp / "fw.bin", tmp / f"fw{sequence}-{'-'.join(by)}.sfui"
    firmware.write_bytes(b"firmware two " * 700)
    args: list[str | Path] = ["sign", firmware, "--sequence", str(sequence), *TARGET, "-o", out,
                              "--json"]
    for name in by:
        args += ["--key", signers.key(name)]
    code, stdout, err = run(capsys, *args)
    assert code == 0, err
    assert len(json.loads(stdout)["signer_key_ids"]) == len(by)
    return out


def test_two_of_three_on_the_command_line(board: Path, signers: Signers, socket_dir: Path,
                                          tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    first, rotation = tmp_path / "v2.cose", tmp_path / "v3.cose"
    _sign_update(capsys, signers, first, 2, ["F1"], ["F1", "F2", "F3"], 2)
    _sign_update(capsys, signers, rotation, 3, ["F1"], ["F1", "F2", "F4"], 2)
    one, two = (_sign_image(capsys, signers, tmp_path, 2, by) for by in (["F1"], ["F1", "F3"]))
    with serve_agent(board, socket_dir) as agent:
        sock: list[str | Path] = ["--socket", agent.socket]
        garbage = tmp_path / "garbage.cose"
        garbage.write_bytes(b"\xd8\x62not a trust update")
        with unchanged(board):
            refused(capsys, errors.FormatError.exit_code, "client", "trust", garbage, *sock)
        code, out, err = run(capsys, "client", "trust", first, *sock)
        assert code == 0 and "firmware 2 of 3" in out, err

        with unchanged(board):  # rotation signed by 1 of 3: refused
            line = refused(capsys, errors.ThresholdError.exit_code, "client", "trust",
                           rotation, *sock)
        assert "needs signatures by 2 distinct active firmware anchors; 1" in line

        code, out, err = run(capsys, "remote", "trust-cosign", rotation, "--key",
                             signers.key("F2"), "-o", rotation)
        assert code == 0 and "2 signatures" in out, err
        code, out, err = run(capsys, "client", "trust", rotation, *sock, "--json")
        assert code == 0 and json.loads(out)["version"] == 3, err

        with unchanged(board):  # firmware with 1 signature, threshold 2: refused
            refused(capsys, errors.ThresholdError.exit_code, "install", one, *sock)
        with unchanged(board):  # F3 was rotated out: F1 + F3 is one active anchor
            refused(capsys, errors.ThresholdError.exit_code, "install", two, *sock)
        both = _sign_image(capsys, signers, tmp_path, 2, ["F4", "F2"])
        code, out, err = run(capsys, "install", both, *sock)
        assert code == 0, err
        code, out, err = run(capsys, "agent", "audit", *sock, "--json")
        audit = json.loads(out)
        firmware = next(r for r in audit["trust"] if r["role"] == "firmware")
        assert audit["trust_version"] == 3 and firmware["threshold"] == 2
        assert len(firmware["anchors"]) == 3
    trust = state(board).trust
    assert trust.version == 3 and trust.threshold(Role.FIRMWARE) == 2
    assert state(board).boot.trial_image is not None


def test_sfu_verify_threshold(signers: Signers, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    image = _sign_image(capsys, signers, tmp_path, 2, ["F1", "F2"])
    pubs: list[str | Path] = []
    for name in ("F1", "F2", "F3"):
        pubs += ["--key", signers.pub(name)]
    assert run(capsys, "verify", image, *pubs, "--threshold", "2")[0] == 0
    line = refused(capsys, errors.ThresholdError.exit_code, "verify", image, *pubs,
                   "--threshold", "3")
    assert "signed by 2 of the given keys" in line


def test_the_same_key_twice_is_refused_when_signing(signers: Signers, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    firmware = tmp_path / "fw.bin"
    firmware.write_bytes(b"x" * 100)
    refused(capsys, errors.UsageError.exit_code, "sign", firmware, "--sequence", "2", *TARGET,
            "--key", signers.key("F1"), "--key", signers.key("F1"), "-o", tmp_path / "o.sfui")
    refused(capsys, errors.UsageError.exit_code, "remote", "trust-sign", *TARGET, "--version",
            "2", "--key", signers.key("F1"), "--key", signers.key("F1"), "--firmware",
            signers.pub("F1"), "-o", tmp_path / "t.cose")


def test_a_threshold_above_the_anchors_is_refused_when_signing(
        signers: Signers, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, errors.SchemaError.exit_code, "remote", "trust-sign", *TARGET,
                   "--version", "2", "--key", signers.key("F1"), "--firmware",
                   signers.pub("F1"), "--firmware-threshold", "2", "-o", tmp_path / "t.cose")
    assert "can never be met" in line
    assert not (tmp_path / "t.cose").exists()

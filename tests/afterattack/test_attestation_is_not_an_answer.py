"""Attack: the Rich OS never delivers a remote command but asks for a plain attestation whose
nonce is the command's hash, and hands that token to the operator as the device's answer.
An answer carries a claim (the command's number, action and outcome) that `attest` cannot
produce, and `sfu attest verify --command` requires it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.afterattack.conftest import Keys
from tests.afterattack.support import command, device_target, refused, remote, run
from tests.agent.support import RunningAgent


def test_plain_attestation_with_the_commands_hash_is_not_accepted_as_its_answer(
        agent: RunningAgent, anchors: Keys, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    signed = command(anchors.operator, device_target(agent.board), 1, "revert")
    (tmp_path / "cmd.cose").write_bytes(signed)
    forged = agent.client().attest(hashlib.sha256(signed).digest())  # command never sent
    (tmp_path / "forged.eat").write_bytes(forged)
    line = refused(capsys, 4, "attest", "verify", tmp_path / "forged.eat", "--device-key",
                   agent.board / "device-id.pub.pem", "--command", tmp_path / "cmd.cose")
    assert "not the device's answer to a command" in line
    assert remote(agent.board).last_command == 0  # and indeed nothing was executed


def test_the_real_answer_verifies_and_names_the_command(
        agent: RunningAgent, anchors: Keys, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    signed = command(anchors.operator, device_target(agent.board), 1, "reboot")
    (tmp_path / "cmd.cose").write_bytes(signed)
    code, _, _ = run(capsys, "client", "remote", tmp_path / "cmd.cose", "--socket",
                     agent.socket, "-o", tmp_path / "answer.eat")
    assert code == 0
    code, out, _ = run(capsys, "attest", "verify", tmp_path / "answer.eat", "--device-key",
                       agent.board / "device-id.pub.pem", "--command", tmp_path / "cmd.cose")
    assert code == 0 and "answers command  1 (reboot): reboot requested" in out


def test_an_answer_to_another_command_is_refused(agent: RunningAgent, anchors: Keys,
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    target = device_target(agent.board)
    first = command(anchors.operator, target, 1, "reboot")
    answer = agent.client().remote(first).token
    (tmp_path / "answer.eat").write_bytes(answer)
    (tmp_path / "other.cose").write_bytes(command(anchors.operator, target, 2, "reboot"))
    refused(capsys, 4, "attest", "verify", tmp_path / "answer.eat", "--device-key",
            agent.board / "device-id.pub.pem", "--command", tmp_path / "other.cose")

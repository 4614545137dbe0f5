"""The operator's and the carrier's command line: `sfu board provision --operator/--recovery`,
`sfu remote sign`, `sfu remote policy-sign`, `sfu client remote`, `sfu agent audit`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sfupdate import keys
from sfupdate.secure.board.records import Role
from tests.afterattack.conftest import Keys
from tests.afterattack.support import events, refused, remote, run, trust_store
from tests.agent.support import RunningAgent
from tests.conftest import SignImage


@pytest.fixture
def operator_key(tmp_path: Path) -> Path:
    """A fresh operator key provisioned on a fresh board: see `cli_board`."""
    key = keys.generate_private_key("ES256")
    path = tmp_path / "operator.key"
    keys.write_private_key(key, path)
    (tmp_path / "operator.pub").write_bytes(keys.public_pem(key.public_key()))
    return path


def test_provision_stores_operator_and_recovery_anchors(
        tmp_path: Path, sign_image: SignImage, anchors: Keys, operator_key: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    board = tmp_path / "board"
    assert run(capsys, "board", "create", board, "--slot-size", "256KiB")[0] == 0
    code, _, err = run(capsys, "board", "provision", board, "--trust", anchors.firmware_pub,
                       "--operator", tmp_path / "operator.pub", "--recovery",
                       anchors.recovery_pub, "--vendor", "example.com", "--class",
                       "demo-board", "--firmware", sign_image(sequence=1))
    assert code == 0, err
    trust = trust_store(board)
    assert [k.kid for k in trust.keys(Role.OPERATOR)] == [
        keys.load_public_key(tmp_path / "operator.pub").kid]
    assert [k.kid for k in trust.keys(Role.RECOVERY)] == [anchors.recovery.kid]


def test_one_key_in_two_roles_is_refused(tmp_path: Path, sign_image: SignImage,
                                         anchors: Keys,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    board = tmp_path / "board"
    run(capsys, "board", "create", board, "--slot-size", "256KiB")
    refused(capsys, 2, "board", "provision", board, "--trust", anchors.firmware_pub,
            "--operator", anchors.firmware_pub, "--vendor", "example.com", "--class",
            "demo-board", "--firmware", sign_image(sequence=1))


def test_sign_and_carry_a_quarantine_then_audit(agent: RunningAgent, anchors: Keys,
                                                tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    key = anchors.operator_key
    cmd, answer = tmp_path / "q.cose", tmp_path / "answer.eat"
    code, out, err = run(capsys, "remote", "sign", "--key", key, "--action", "quarantine",
                         "--device-key", agent.board / "device-id.pub.pem", "--number", "3",
                         "--recovery-key", anchors.recovery_pub, "--expires-in", "60",
                         "-o", cmd)
    assert code == 0, err
    code, out, err = run(capsys, "client", "remote", cmd, "--socket", agent.socket, "-o",
                         answer, "--json")
    assert code == 0, err
    assert json.loads(out)["action"] == "quarantine"
    assert remote(agent.board).quarantine == anchors.recovery.kid
    code, out, _ = run(capsys, "attest", "verify", answer, "--device-key",
                       agent.board / "device-id.pub.pem", "--command", cmd, "--json")
    assert code == 0 and json.loads(out)["quarantine"] == anchors.recovery.kid.hex()
    code, out, _ = run(capsys, "agent", "audit", "--socket", agent.socket)
    assert code == 0
    assert f"quarantine       {anchors.recovery.kid.hex()}" in out
    assert "#1" in out and "command quarantine" in out
    line = refused(capsys, 7, "client", "remote", cmd, "--socket", agent.socket)
    assert "not above 3" in line


@pytest.mark.parametrize(("extra", "message"), [
    (["--action", "revert", "--nonce", "00" * 8], "--nonce does not apply to revert"),
    (["--action", "revoke-key"], "revoke-key needs --revoke"),
    (["--action", "revoke-key", "--revoke", "xyz"], "public key file or a 64-digit hex"),
    (["--action", "reboot", "--vendor", "example.com"], "name the target"),
])
def test_remote_sign_usage_errors(tmp_path: Path, anchors: Keys, extra: list[str],
                                  message: str, capsys: pytest.CaptureFixture[str]) -> None:
    key = anchors.operator_key
    target = [] if "--vendor" in extra else ["--vendor", "example.com", "--class", "demo-board"]
    line = refused(capsys, 2, "remote", "sign", "--key", key, "--number", "1", *target,
                   *extra, "-o", tmp_path / "x.cose")
    assert message in line


def test_policy_sign_from_json_and_install(agent: RunningAgent, anchors: Keys, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    key = anchors.operator_key
    watched = tmp_path / "watched.cfg"
    watched.write_bytes(b"mode=secure\n")
    (tmp_path / "reference.cfg").write_bytes(b"mode=secure\n")
    spec = tmp_path / "policy.json"
    spec.write_text(json.dumps({"regions": [
        {"name": "watched", "file": str(watched), "sha256_of": "reference.cfg",
         "on_mismatch": "report"}]}))
    signed = tmp_path / "policy.cose"
    code, out, err = run(capsys, "remote", "policy-sign", spec, "--key", key, "--vendor",
                         "example.com", "--class", "demo-board", "--sequence", "1", "-o",
                         signed)
    assert code == 0, err
    assert run(capsys, "agent", "policy", "install", signed, "--socket", agent.socket)[0] == 0
    assert run(capsys, "agent", "check", "--socket", agent.socket)[0] == 0
    watched.write_bytes(b"mode=debug\n")
    code, out, _ = run(capsys, "agent", "check", "--socket", agent.socket, "--json")
    assert code == 16 and json.loads(out)["intact"] is False
    assert events(agent.board).events[-1].subject == "policy:watched"
    refused(capsys, 7, "agent", "policy", "install", signed, "--socket", agent.socket)


def test_policy_sign_refuses_a_bad_spec(tmp_path: Path, anchors: Keys,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    key = anchors.operator_key
    spec = tmp_path / "policy.json"
    spec.write_text(json.dumps({"regions": [{"name": "x", "file": "/etc/x"}]}))
    line = refused(capsys, 2, "remote", "policy-sign", spec, "--key", key, "--vendor",
                   "example.com", "--class", "demo-board", "--sequence", "1", "-o",
                   tmp_path / "p.cose")
    assert "sha256" in line

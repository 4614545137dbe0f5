"""Attestation through a real agent and the operator's `sfu attest verify`: the token
verifies and describes the device; a wrong nonce, a tampered token or another device's key
are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sfupdate import errors, keys
from sfupdate.formats.remote import verify_token
from tests.afterattack.support import flip_byte, refused, run, state
from tests.agent.support import RunningAgent

NONCE = "00112233445566778899aabbccddeeff"


def test_attestation_verifies_and_describes_the_device(agent: RunningAgent, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    token = tmp_path / "token.eat"
    code, _, _ = run(capsys, "agent", "attest", "--nonce", NONCE, "--socket", agent.socket,
                     "-o", token)
    assert code == 0
    device_key = agent.board / "device-id.pub.pem"
    code, out, _ = run(capsys, "attest", "verify", token, "--device-key", device_key,
                       "--nonce", NONCE, "--json")
    assert code == 0
    claims = json.loads(out)
    status = agent.client().status()
    assert claims["running_slot"] == status.running_slot == "A"
    assert claims["rollback_floor"] == status.rollback_floor
    assert claims["slots"][0] == {"name": "A", "state": "confirmed", "sequence": 1,
                                  "digest": status.slots["A"].digest}
    measured = state(agent.board).measured
    assert claims["boot_log"] == [e.digest.hex() for e in measured.events]
    assert claims["integrity"] == [{"region": "running-slot", "result": "ok"},
                                   {"region": "agent-bundle", "result": "ok"}]
    code, out, _ = run(capsys, "attest", "verify", token, "--device-key", device_key,
                       "--nonce", NONCE)
    assert code == 0 and out.startswith("verified: signed by device")


def test_attestation_reports_a_tampered_slot(agent: RunningAgent) -> None:
    flip_byte(agent.board / "slots" / "A.img", 7)
    token = agent.client().attest(bytes.fromhex(NONCE))
    claims = verify_token(token, keys.load_public_key(agent.board / "device-id.pub.pem"),
                          bytes.fromhex(NONCE))
    assert claims.to_json()["integrity"][0] == {"region": "running-slot", "result": "MISMATCH"}


def test_wrong_nonce_is_refused(agent: RunningAgent, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    token = tmp_path / "token.eat"
    token.write_bytes(agent.client().attest(bytes.fromhex(NONCE)))
    line = refused(capsys, 4, "attest", "verify", token, "--device-key",
                   agent.board / "device-id.pub.pem", "--nonce", "ff" * 16)
    assert "another nonce" in line


def test_tampered_token_is_refused(agent: RunningAgent, tmp_path: Path) -> None:
    token = agent.client().attest(bytes.fromhex(NONCE))
    device_key = keys.load_public_key(agent.board / "device-id.pub.pem")
    for offset in range(0, len(token), 7):
        tampered = bytearray(token)
        tampered[offset] ^= 0x04
        with pytest.raises((errors.FormatError, errors.AuthenticationError)):
            verify_token(bytes(tampered), device_key, bytes.fromhex(NONCE))


def test_token_checked_with_another_devices_key_is_refused(agent: RunningAgent,
                                                           tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    token = tmp_path / "token.eat"
    token.write_bytes(agent.client().attest(bytes.fromhex(NONCE)))
    other = tmp_path / "other.pub"
    other.write_bytes(keys.public_pem(keys.generate_private_key("ES256").public_key()))
    refused(capsys, 4, "attest", "verify", token, "--device-key", other, "--nonce", NONCE)


@pytest.mark.parametrize("nonce", ["00" * 7, "00" * 65])
def test_nonce_outside_8_to_64_bytes_is_refused(agent: RunningAgent, nonce: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A usage error, before the agent is asked (which would refuse it too: exit 11)."""
    line = refused(capsys, 2, "agent", "attest", "--nonce", nonce, "--socket", agent.socket)
    assert "8 to 64 bytes" in line

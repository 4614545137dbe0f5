"""Keys in a PKCS#11 token (a real SoftHSM2 token) as one of several signers: firmware signed
by a token key and a file key meets a threshold of 2, and a trust update is signed in the
token by `sfu remote trust-sign` and co-signed there by `sfu remote trust-cosign`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sfupdate import keys
from sfupdate.formats.remote.trust import verify_trust_update
from tests.afterattack.support import run
from tests.keys.softhsm import SoftHsm

TARGET = ["--vendor", "example.com", "--class", "demo-board"]


def _token_key(capsys: pytest.CaptureFixture[str], hsm: SoftHsm, label: str,
               out: Path) -> str:
    uri = hsm.generate(label)
    code, _, err = run(capsys, "keys", "public", uri, "-o", out)
    assert code == 0, err
    return uri


def test_firmware_signed_by_a_token_key_and_a_file_key(
        hsm_env: SoftHsm, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token = _token_key(capsys, hsm_env, "fw-token", tmp_path / "token.pub")
    file_key = tmp_path / "file.key"
    keys.write_private_key(keys.generate_private_key("ES256"), file_key)
    assert run(capsys, "keys", "public", file_key, "-o", tmp_path / "file.pub")[0] == 0
    firmware, image = tmp_path / "fw.bin", tmp_path / "fw.sfui"
    firmware.write_bytes(b"two signers " * 300)
    code, _, err = run(capsys, "sign", firmware, "--key", token, "--key", file_key,
                       "--sequence", "2", *TARGET, "-o", image)
    assert code == 0, err
    code, out, err = run(capsys, "verify", image, "--key", tmp_path / "token.pub", "--key",
                         tmp_path / "file.pub", "--threshold", "2", "--json")
    assert code == 0, err
    assert len(json.loads(out)["signer_key_ids"]) == 2


def test_trust_update_signed_and_cosigned_in_the_token(
        hsm_env: SoftHsm, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = _token_key(capsys, hsm_env, "trust-a", tmp_path / "a.pub")
    second = _token_key(capsys, hsm_env, "trust-b", tmp_path / "b.pub")
    update = tmp_path / "update.cose"
    code, _, err = run(capsys, "remote", "trust-sign", *TARGET, "--version", "2", "--key",
                       first, "--firmware", tmp_path / "a.pub", "--firmware", tmp_path / "b.pub",
                       "--firmware-threshold", "2", "-o", update)
    assert code == 0, err
    code, out, err = run(capsys, "remote", "trust-cosign", update, "--key", second, "-o",
                         update)
    assert code == 0 and "2 signatures" in out, err
    anchors = [keys.load_public_key(tmp_path / name) for name in ("a.pub", "b.pub")]
    signed, signers = verify_trust_update(update.read_bytes(), anchors)
    assert {k.kid for k in signers} == {k.kid for k in anchors}
    assert signed.roles[0].threshold == 2

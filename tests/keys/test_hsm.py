"""Keys in a PKCS#11 token (a real SoftHSM2 token): `sfu sign`, `sfu remote sign` and the
repository's TUF metadata signed inside the token, and verified with the public keys that
`sfu keys public pkcs11:...` exports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from securesystemslib.signer import SSlibKey

from sfupdate import errors, keys
from sfupdate.formats.remote import verify_command
from sfupdate.formats.sfui import EnvelopeReader, TrustedKey
from sfupdate.richos.client import FileSource, RepositoryIndex, TransferPolicy
from tests.afterattack.support import refused, run
from tests.conftest import SignImage
from tests.keys.softhsm import PIN, SoftHsm

CURVES = ["P-256", "Ed25519"]


def _export(capsys: pytest.CaptureFixture[str], uri: str, out: Path) -> TrustedKey:
    code, _, err = run(capsys, "keys", "public", uri, "-o", out)
    assert code == 0, err
    assert out.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    return keys.load_public_key(out)


@pytest.mark.parametrize("curve", CURVES)
def test_sign_an_sfui_in_the_token_and_verify_it_with_the_exported_key(
        hsm_env: SoftHsm, tmp_path: Path, curve: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    uri = hsm_env.generate(f"firmware-{curve}", curve)
    public = _export(capsys, uri, tmp_path / "firmware.pub")
    firmware, image = tmp_path / "fw.bin", tmp_path / "fw.sfui"
    firmware.write_bytes(b"firmware in a token" * 500)
    code, out, err = run(capsys, "sign", firmware, "--key", uri, "--sequence", "3", "--vendor",
                         "example.com", "--class", "demo-board", "-o", image)
    assert code == 0, err
    code, out, err = run(capsys, "verify", image, "--key", tmp_path / "firmware.pub")
    assert code == 0, err
    assert public.kid.hex()[:16] in out
    with image.open("rb") as f:
        assert EnvelopeReader(f).authenticate([public]).signer == public


def _sfu_process(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`sfu ARGS` in a process of its own (its own token login), stdin not a terminal."""
    return subprocess.run([sys.executable, "-m", "sfupdate.cli.main", *map(str, args)],
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60)


def test_remote_command_signed_in_the_token(softhsm: SoftHsm, tmp_path: Path,
                                            pin_file: Path) -> None:
    """The module from --pkcs11-module, the PIN from the URI's pin-source file: nothing in
    the environment (a process of its own, so the PIN is really read)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("SFU_PKCS11_PIN", "SFU_PKCS11_MODULE")}
    softhsm.generate("operator")
    uri = softhsm.uri("operator", **{"pin-source": f"file:{pin_file}"})
    exported = _sfu_process("keys", "public", uri, "--pkcs11-module", softhsm.module, "-o",
                            tmp_path / "operator.pub", env=env)
    assert exported.returncode == 0, exported.stderr
    command = tmp_path / "reboot.cose"
    signed_by = _sfu_process("remote", "sign", "--key", uri, "--pkcs11-module", softhsm.module,
                             "--action", "reboot", "--vendor", "example.com", "--class",
                             "demo-board", "--number", "7", "-o", command, env=env)
    assert signed_by.returncode == 0, signed_by.stderr
    signed, _ = verify_command(command.read_bytes(),
                               [keys.load_public_key(tmp_path / "operator.pub")])
    assert (signed.action, signed.number) == ("reboot", 7)
    other = TrustedKey(keys.generate_private_key("ES256").public_key())
    with pytest.raises(errors.AuthenticationError):
        verify_command(command.read_bytes(), [other])
    pin_file.write_text("0000\n")  # the file is what is read: a wrong PIN in it is refused
    refused_run = _sfu_process("keys", "public", uri, "--pkcs11-module", softhsm.module,
                               env=env)
    assert refused_run.returncode == 6 and "wrong PIN" in refused_run.stderr


def test_repository_roles_sign_in_the_token_and_a_client_verifies(
        hsm_env: SoftHsm, tmp_path: Path, sign_image: SignImage, firmware_pub: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Every TUF role's key in the token (Ed25519 root, P-256 online roles): init, add,
    publish with the remembered URIs, and a python-tuf client trusting root v1 refreshes."""
    uris = {role: hsm_env.generate(f"repo-{role}", "Ed25519" if role == "root" else "P-256")
            for role in ("root", "targets", "snapshot", "timestamp")}
    repo = tmp_path / "repo"
    code, _, err = run(capsys, "repo", "init", repo, "--root-key", uris["root"],
                       "--targets-key", uris["targets"], "--snapshot-key", uris["snapshot"],
                       "--timestamp-key", uris["timestamp"], "--firmware-key", firmware_pub)
    assert code == 0, err
    remembered = json.loads((repo / ".sfu" / "keys.json").read_text())
    assert remembered == {role: [uris[role]] for role in ("targets", "snapshot", "timestamp")}
    assert PIN not in (repo / ".sfu" / "keys.json").read_text()
    assert run(capsys, "repo", "add", repo, sign_image(sequence=2))[0] == 0
    assert run(capsys, "repo", "publish", repo)[0] == 0

    def refresh() -> list[int]:
        index = RepositoryIndex(FileSource(repo), tmp_path / "state",
                                repo / "metadata" / "1.root.json", TransferPolicy())
        return [c.sequence for c in index.refresh()]

    assert refresh() == [2]
    new_timestamp = hsm_env.generate("repo-timestamp-2")  # rotated to another token key
    code, _, err = run(capsys, "repo", "rotate", repo, "timestamp", "--new-key", new_timestamp,
                       "--root-key", uris["root"])
    assert code == 0, err
    assert run(capsys, "repo", "add", repo, sign_image(sequence=3))[0] == 0
    assert run(capsys, "repo", "publish", repo)[0] == 0
    assert refresh() == [2, 3]
    assert json.loads((tmp_path / "state" / "root.json").read_text())["signed"]["version"] == 2
    uris["timestamp"] = new_timestamp
    root = json.loads((repo / "metadata" / "2.root.json").read_text())["signed"]
    for role, uri in uris.items():  # root v2 lists exactly the token's keys, one per role
        exported = _export(capsys, uri, tmp_path / f"{role}.pub")
        assert root["roles"][role]["keyids"] == [SSlibKey.from_crypto(exported.public_key).keyid]


def test_token_errors_are_one_line_exit_6(hsm_env: SoftHsm, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    uri = hsm_env.generate("errors")
    firmware = tmp_path / "fw.bin"
    firmware.write_bytes(b"x" * 100)
    sign: list[str | Path] = ["sign", firmware, "--sequence", "1", "--vendor", "example.com",
                              "--class", "c", "-o", tmp_path / "fw.sfui", "--key"]
    assert "no private key" in refused(capsys, 6, *sign, hsm_env.uri("no-such-key"))
    assert "pin-value" in refused(capsys, 6, *sign, uri + "?pin-value=1234")
    assert "unsupported attribute" in refused(capsys, 6, *sign, uri + ";slot-id=0")
    assert "no token" in refused(capsys, 6, *sign, "pkcs11:token=absent;object=errors")
    line = refused(capsys, 6, *sign, uri, "--pkcs11-module", tmp_path / "missing.so")
    assert "missing.so" in line
    monkeypatch.delenv("SFU_PKCS11_MODULE")
    assert "--pkcs11-module" in refused(capsys, 6, *sign, uri)


@pytest.mark.parametrize(("pin", "says"), [(None, "set SFU_PKCS11_PIN"), ("0000", "wrong PIN")])
def test_a_missing_or_wrong_pin_is_refused(hsm_env: SoftHsm, tmp_path: Path, pin: str | None,
                                           says: str) -> None:
    """In a process of its own: a token is logged in to once per process, and this one's
    login is long done. Without a terminal nothing is asked."""
    uri = hsm_env.generate(f"pin-{pin}")
    env = {k: v for k, v in os.environ.items() if k != "SFU_PKCS11_PIN"}
    if pin is not None:
        env["SFU_PKCS11_PIN"] = pin
    result = _sfu_process("keys", "public", uri, env=env)
    assert result.returncode == errors.KeyFileError.exit_code
    assert result.stderr.startswith("sfu: error: ") and len(result.stderr.splitlines()) == 1
    assert says in result.stderr


def test_a_mislabelled_key_pair_signs_nothing(hsm_env: SoftHsm, tmp_path: Path,
                                              firmware_pub: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The token's signature is checked against its public key object before it is used:
    a mislabelled pair fails with one line, for an SFUI and for TUF metadata alike."""
    uri = hsm_env.mismatch("mislabelled")
    firmware = tmp_path / "fw.bin"
    firmware.write_bytes(b"x" * 100)
    line = refused(capsys, 6, "sign", firmware, "--key", uri, "--sequence", "1", "--vendor",
                   "example.com", "--class", "c", "-o", tmp_path / "fw.sfui")
    assert "does not verify" in line
    assert not (tmp_path / "fw.sfui").exists()
    line = refused(capsys, 6, "repo", "init", tmp_path / "repo", "--key", uri,
                   "--firmware-key", firmware_pub)
    assert "does not verify" in line
    assert list((tmp_path / "repo").iterdir()) == []  # nothing half-made: init can be rerun

"""One voice (issue 16 items 8-10): the shared vocabulary of docs/cli.md, in real commands
against a real agent: the JSON error object, the progress stream, device status in one shape,
absent values and plurals, and messages that say what is wrong."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sfupdate import errors, keys
from sfupdate.cli.main import main
from sfupdate.keys.files import FileSigner
from tests.agent.support import RunningAgent
from tests.conftest import SignImage
from tests.world import CLASS, CLASS_NAME, VENDOR, VENDOR_NAME


@pytest.fixture
def es256_key_file(tmp_path: Path, es256_signer: FileSigner) -> Path:
    """The private key `sign_image` signs with, as a file for the CLI."""
    path = tmp_path / "author.key"
    path.write_bytes(es256_signer._key.private_bytes(  # test-only access to the key
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return path


@pytest.fixture
def es256_pub_file(tmp_path: Path, es256_signer: FileSigner) -> Path:
    """Its public half: what `sfu verify --key` takes (a trust anchor is a public key)."""
    path = tmp_path / "author.pub"
    path.write_bytes(keys.public_pem(es256_signer.public_key))
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str | Path | int) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sfu: error: "), err
    return lines[0]


# --- the JSON error object -------------------------------------------------------------------


def test_a_failing_json_command_prints_the_error_object(
        tmp_path: Path, sign_image: SignImage, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.pub"
    other.write_bytes(keys.public_pem(keys.generate_private_key("ES256").public_key()))
    code, out, err = run(capsys, "verify", sign_image(), "--key", other, "--json")
    assert code == errors.UnknownKeyError.exit_code == 4
    line = one_error_line(err)
    assert json.loads(out) == {"error": {"code": 4, "class": "UnknownKeyError",
                                         "message": line.removeprefix("sfu: error: ")}}


def test_a_usage_error_is_one_line_and_with_json_an_error_object(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "repo", "list", tmp_path / "missing", "--json")
    assert code == 2
    assert "see 'sfu repo list --help'" in one_error_line(err)
    error = json.loads(out)["error"]
    assert (error["code"], error["class"]) == (2, "UsageError") and "missing" in error["message"]
    code, out, err = run(capsys, "repo", "list", tmp_path / "missing")  # no --json: no JSON
    assert code == 2 and out == "" and one_error_line(err)


@pytest.mark.parametrize("args", [[], ["client"], ["agent", "policy"]])
def test_sfu_alone_prints_help_and_exits_0(args: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *args)
    assert code == 0 and out.startswith("Usage: sfu") and "Commands:" in out and err == ""


# --- progress for scripts --------------------------------------------------------------------


def _events(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_progress_json_is_a_stream_of_events_on_stderr(
        tmp_path: Path, agent: RunningAgent, es256_key_file: Path, es256_pub_file: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    firmware = tmp_path / "fw.bin"
    firmware.write_bytes(b"\x5a" * 200_000)  # the test board's slots hold 256 KiB
    sfui = tmp_path / "fw.sfui"
    code, out, err = run(capsys, "sign", firmware, "--key", es256_key_file, "--sequence", 2,
                         "--vendor", "example.com", "--class", "demo-board", "-o", sfui,
                         "--progress", "json", "--json")
    assert code == 0, err
    assert json.loads(out)["image_size"] == 200_000
    assert _events(err) == [{"event": "progress", "phase": "signing", "done": 200_000,
                             "total": 200_000}]  # signing reads 1 MiB at a time
    code, out, err = run(capsys, "install", sfui, "--socket", agent.socket, "--progress",
                         "json", "--json")
    assert code == 0, err
    installing = _events(err)
    assert installing and {e["phase"] for e in installing} == {"installing"}
    assert installing[-1]["done"] == installing[-1]["total"] == sfui.stat().st_size
    assert json.loads(out)["sequence"] == 2
    code, _, err = run(capsys, "verify", sfui, "--key", es256_pub_file, "--progress", "none")
    assert code == 0 and err == ""


# --- device status: one shape ----------------------------------------------------------------


def test_board_status_and_agent_status_speak_alike(
        agent: RunningAgent, sign_image: SignImage, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "install", sign_image(sequence=2), "--socket", agent.socket)
    assert code == 0, err
    code, out, _ = run(capsys, "agent", "status", "--socket", agent.socket, "--json")
    from_agent = json.loads(out)
    code, out, _ = run(capsys, "board", "status", agent.board, "--json")
    from_board = json.loads(out)
    for key, value in from_agent.items():
        if key != "slots":
            assert from_board[key] == value, key
    for name, slot in from_agent["slots"].items():
        assert {k: from_board["slots"][name][k] for k in slot} == slot
    assert from_agent["trial_tries_left"] == 3
    _, agent_text, _ = run(capsys, "agent", "status", "--socket", agent.socket)
    _, board_text, _ = run(capsys, "board", "status", agent.board)
    shared = [line for line in agent_text.splitlines() if not line.startswith("slot ")]
    assert all(line in board_text.splitlines() for line in shared)
    assert "trial            slot B, 3 tries left" in shared


def test_absent_values_are_a_dash_and_counts_agree(
        agent: RunningAgent, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "agent", "status", "--socket", agent.socket)
    assert "trial            -\n" in out
    _, out, _ = run(capsys, "board", "status", agent.board)
    assert "trial            -\n" in out and "booted           -\n" in out
    _, out, _ = run(capsys, "agent", "audit", "--socket", agent.socket)
    assert "quarantine       -\n" in out and "integrity policy -\n" in out
    assert "None" not in out


def test_sha256_is_spelled_one_way(tmp_path: Path, es256_key_file: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    firmware = tmp_path / "fw.bin"
    firmware.write_bytes(b"x" * 1000)
    sfui = tmp_path / "fw.sfui"
    _, out, _ = run(capsys, "sign", firmware, "--key", es256_key_file, "--sequence", 1,
                    "--vendor", "example.com", "--class", "demo-board", "-o", sfui)
    _, inspected, _ = run(capsys, "inspect", sfui)
    assert "sha256 " in out and "sha256:" in inspected
    assert "sha-256" not in out + inspected


# --- messages --------------------------------------------------------------------------------


@pytest.mark.parametrize("nonce", ["00", "00" * 65])
def test_a_nonce_of_the_wrong_length_is_a_usage_error(
        nonce: str, agent: RunningAgent, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "agent", "attest", "--nonce", nonce, "--socket", agent.socket)
    assert code == 2 and out == ""
    assert "must be 8 to 64 bytes (16 to 128 hex digits)" in one_error_line(err)


def test_attest_json(agent: RunningAgent, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "agent", "attest", "--nonce", "00" * 16, "--socket",
                         agent.socket, "--json")
    assert code == 0, err
    token = json.loads(out)
    assert token["length"] == len(bytes.fromhex(token["token"])) and token["file"] is None


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, password: bytes | None) -> bytes:
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)


def _key_file(kind: str) -> bytes:
    p256 = ec.generate_private_key(ec.SECP256R1())
    if kind == "encrypted":
        return _pem(p256, b"secret")
    if kind == "public":
        return keys.public_pem(p256.public_key())
    if kind == "rsa":
        return _pem(rsa.generate_private_key(65537, 2048), None)
    if kind == "p384":
        return _pem(ec.generate_private_key(ec.SECP384R1()), None)
    return b"not a key"


@pytest.mark.parametrize(("kind", "says"), [
    ("junk", "is not a PEM private key"),
    ("encrypted", "is an encrypted private key"),
    ("public", "is a public key, not the private key signing needs"),
    ("rsa", "is an RSA key; sfu uses P-256 or Ed25519 keys"),
    ("p384", "is an EC key on curve secp384r1"),
])
def test_key_errors_say_what_is_wrong(tmp_path: Path, kind: str, says: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(_key_file(kind))
    firmware = tmp_path / "fw.bin"
    firmware.write_bytes(b"x")
    code, _, err = run(capsys, "sign", firmware, "--key", key, "--sequence", 1, "--vendor",
                       "example.com", "--class", "demo-board", "-o", tmp_path / "fw.sfui")
    line = one_error_line(err)
    assert code == errors.KeyFileError.exit_code and says in line
    assert "http" not in line and "Details" not in line and "ASN.1" not in line


def test_a_full_disk_names_the_file(es256_key_file: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    code, _, err = run(capsys, "keys", "public", es256_key_file, "-o", "/dev/full",
                         "--force")
    assert code == 2
    assert one_error_line(err) == "sfu: error: cannot write /dev/full: No space left on device"


def test_a_vendor_mismatch_is_worded_one_way(agent: RunningAgent, sign_image: SignImage,
                                             es256_pub_file: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    alien = sign_image(sequence=5, vendor=uuid.uuid5(uuid.NAMESPACE_DNS, "other.example"),
                       klass=CLASS)
    code, _, err = run(capsys, "verify", alien, "--key", es256_pub_file, "--vendor",
                       "example.com")
    by_verify = one_error_line(err)
    code2, _, err = run(capsys, "install", alien, "--socket", agent.socket)
    by_agent = one_error_line(err)
    assert code == code2 == errors.WrongVendorError.exit_code
    for line in (by_verify, by_agent):
        assert " is for vendor " in line and ", expected " in line


def test_verify_refuses_another_class_with_the_agents_check(
        agent: RunningAgent, sign_image: SignImage, es256_pub_file: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`sfu verify --vendor --class` is the agent's vendor-and-class check: the same refusal,
    in the same words (only the subject differs), for an image of another device class."""
    alien = sign_image(sequence=5, vendor=VENDOR, klass=uuid.uuid5(VENDOR, "other-board"))
    code, _, err = run(capsys, "verify", alien, "--key", es256_pub_file, "--vendor",
                       VENDOR_NAME, "--class", CLASS_NAME)
    by_verify = one_error_line(err)
    code2, _, err = run(capsys, "install", alien, "--socket", agent.socket)
    by_agent = one_error_line(err)
    assert code == code2 == errors.WrongClassError.exit_code
    assert by_verify == f"sfu: error: {alien} is for device class " + by_agent.split(
        " is for device class ", 1)[1]
    own = sign_image(sequence=6, vendor=VENDOR, klass=CLASS)
    assert run(capsys, "verify", own, "--key", es256_pub_file, "--vendor", VENDOR_NAME,
               "--class", CLASS_NAME)[0] == 0

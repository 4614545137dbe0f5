"""Several components in one SFUI, as the author makes and reads it: `sfu sign --component
NAME=FILE ...` writes one signed manifest listing every component (each with its own digest,
size and integrated payload "#NAME", expressed with set-component-index as the draft does),
`sfu inspect` and `sfu verify` list them, and the reader streams each payload in turn,
refusing one that does not match its own digest or that is missing."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from sfupdate import errors, keys
from sfupdate.authoring.author import ImageSpec
from sfupdate.authoring.author.components import sign_components
from sfupdate.authoring.repo.admit import admit
from sfupdate.cli.main import main
from sfupdate.errors import PayloadDigestError, SchemaError
from sfupdate.formats.sfui import EnvelopeReader, TrustedKey, suit
from sfupdate.formats.sfui.components import parts
from sfupdate.formats.sfui.encoding import Delta
from sfupdate.keys.files import FileSigner
from tests.world import CLASS, VENDOR

BOOT = b"bootloader " * 900
APP = b"application " * 3000


def two_components(tmp_path: Path, signer: FileSigner, sequence: int = 2) -> Path:
    (tmp_path / "boot.bin").write_bytes(BOOT)
    (tmp_path / "app.bin").write_bytes(APP)
    out = tmp_path / f"set{sequence}.sfui"
    sign_components([("boot", tmp_path / "boot.bin"), ("app", tmp_path / "app.bin")], out,
                    signer, ImageSpec(sequence, VENDOR, CLASS, "2.0"))
    return out


def test_each_component_streams_with_its_own_digest_and_size(
        tmp_path: Path, es256_signer: FileSigner, es256_trusted: TrustedKey) -> None:
    with open(two_components(tmp_path, es256_signer), "rb") as f:
        reader = EnvelopeReader(f)
        verified = reader.authenticate([es256_trusted])
        got = {part.name: b"".join(chunks) for part, chunks in reader.payloads()}
    assert got == {"boot": BOOT, "app": APP}
    described = parts(verified.manifest)
    assert [(p.name, p.size, p.uri) for p in described] == [
        ("boot", len(BOOT), "#boot"), ("app", len(APP), "#app")]
    assert all((p.vendor_id, p.class_id) == (VENDOR, CLASS) for p in described)


def test_the_manifest_selects_each_component_by_index_as_the_draft_does(
        tmp_path: Path, es256_signer: FileSigner, es256_trusted: TrustedKey) -> None:
    with open(two_components(tmp_path, es256_signer), "rb") as f:
        manifest = EnvelopeReader(f).authenticate([es256_trusted]).manifest
    assert manifest.common.components == ((b"boot",), (b"app",))
    install = manifest.install
    assert isinstance(install, tuple)
    codes = [(c.code, c.argument) for c in install if c.code in (
        suit.DIR_SET_COMPONENT_INDEX, suit.DIR_FETCH)]
    assert codes == [(suit.DIR_SET_COMPONENT_INDEX, 0), (suit.DIR_FETCH, suit.REPORT_ALL),
                     (suit.DIR_SET_COMPONENT_INDEX, 1), (suit.DIR_FETCH, suit.REPORT_ALL)]


def test_a_flipped_byte_in_the_second_payload_is_refused(
        tmp_path: Path, es256_signer: FileSigner, es256_trusted: TrustedKey) -> None:
    image = bytearray(two_components(tmp_path, es256_signer).read_bytes())
    image[-10] ^= 1  # in the last payload of the envelope
    tampered = tmp_path / "tampered.sfui"
    tampered.write_bytes(image)
    with open(tampered, "rb") as f:
        reader = EnvelopeReader(f)
        reader.authenticate([es256_trusted])
        with pytest.raises(PayloadDigestError):
            for _, chunks in reader.payloads():
                for _ in chunks:
                    pass


def test_an_envelope_missing_a_components_payload_is_refused(
        tmp_path: Path, es256_signer: FileSigner, es256_trusted: TrustedKey) -> None:
    """Map count lowered by one and the last payload cut off: a well-formed envelope that
    carries the app's payload but not the boot's is refused when it is authenticated, before
    a byte of any payload is used."""
    image = two_components(tmp_path, es256_signer).read_bytes()
    head = image.index(b"\x64#app")  # the first payload in envelope order: "#app" < "#boot"
    cut = bytearray(image[:image.index(b"\x65#boot", head)])
    assert cut[2] & 0xE0 == 0xA0  # the envelope map's head, after the tag 107 (0xd8 0x6b)
    cut[2] -= 1
    short = tmp_path / "short.sfui"
    short.write_bytes(bytes(cut))
    with open(short, "rb") as f, pytest.raises(SchemaError, match="1 integrated payloads "
                                                                  "for 2 components"):
        EnvelopeReader(f).authenticate([es256_trusted])


def sfu(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_sign_inspect_and_verify_list_every_component(
        tmp_path: Path, es256_signer: FileSigner, capsys: pytest.CaptureFixture[str]) -> None:
    key, public = tmp_path / "a.key", tmp_path / "a.pub"
    keys.write_private_key(keys.generate_private_key("ES256"), key)
    assert sfu(capsys, "keys", "public", key, "-o", public)[0] == 0
    (tmp_path / "boot.bin").write_bytes(BOOT)
    (tmp_path / "app.bin").write_bytes(APP)
    out = tmp_path / "set.sfui"
    code, signed, _ = sfu(capsys, "sign", "--component", f"boot={tmp_path / 'boot.bin'}",
                          "--component", f"app={tmp_path / 'app.bin'}", "--key", key,
                          "--sequence", "5", "--vendor", "example.com", "--class",
                          "demo-board", "-o", out, "--json")
    assert code == 0
    assert [c["name"] for c in json.loads(signed)["components"]] == ["boot", "app"]
    code, shown, _ = sfu(capsys, "inspect", out, "--json")
    images = json.loads(shown)["images"]
    assert code == 0 and [(i["component"], i["image_size"], i["uri"]) for i in images] == [
        ("boot", len(BOOT), "#boot"), ("app", len(APP), "#app")]
    code, text, _ = sfu(capsys, "verify", out, "--key", public)
    assert code == 0 and "2 components" in text


def test_sign_takes_a_file_or_components_not_both(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "fw.bin").write_bytes(b"fw")
    code, out, err = sfu(capsys, "sign", tmp_path / "fw.bin", "--component",
                         f"app={tmp_path / 'fw.bin'}", "--key", "k", "--sequence", "1",
                         "--vendor", "v", "--class", "c", "-o", tmp_path / "x.sfui")
    assert code == errors.UsageError.exit_code and out == ""
    assert err.startswith("sfu: error: ") and len(err.splitlines()) == 1


def _no_base(delta: Delta) -> bytes:
    raise AssertionError("a set is never a delta")


def test_the_repository_admits_a_set_whole_and_refuses_a_bad_second_payload(
        tmp_path: Path, es256_signer: FileSigner, es256_trusted: TrustedKey) -> None:
    image = two_components(tmp_path, es256_signer)
    with open(image, "rb") as f:
        admitted = admit(f, image, tmp_path, [es256_trusted], _no_base)
    assert admitted.length == image.stat().st_size
    flipped = bytearray(image.read_bytes())
    flipped[-10] ^= 1
    with pytest.raises(PayloadDigestError):
        admit(io.BytesIO(bytes(flipped)), image, tmp_path, [es256_trusted], _no_base)

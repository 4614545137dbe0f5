"""The author's commands on the files they are given: `sfu sign` does not overwrite an
existing output without --force; `sfu inspect` says a truncated SFUI is truncated and fails."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest

from sfupdate import errors, keys
from sfupdate.cli.main import main
from sfupdate.formats.sfui import EnvelopeReader
from tests.conftest import SignImage


def sfu(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sfu: error: "), err
    return lines[0]


@pytest.fixture
def author_key(tmp_path: Path) -> Path:
    key = tmp_path / "author.key"
    keys.write_private_key(keys.generate_private_key("ES256"), key)
    return key


@pytest.fixture
def signing(tmp_path: Path, author_key: Path) -> list[str]:
    """`sfu sign` arguments up to -o, for a small firmware."""
    firmware, key = tmp_path / "fw.bin", author_key
    firmware.write_bytes(b"firmware" * 1000)
    return ["sign", str(firmware), "--key", str(key), "--sequence", "2", "--vendor",
            "example.com", "--class", "demo-board"]


def test_sign_refuses_to_overwrite_an_existing_output(
        tmp_path: Path, signing: list[str], author_key: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "precious.sfui"
    output.write_bytes(b"the only copy of something")
    code, out, err = sfu(capsys, *signing, "-o", output)
    assert code == errors.UsageError.exit_code and out == ""
    assert "--force" in one_error_line(err)
    assert output.read_bytes() == b"the only copy of something"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    assert sfu(capsys, *signing, "-o", output, "--force")[0] == 0
    with output.open("rb") as f:
        trusted = keys.load_public_half(author_key)
        assert EnvelopeReader(f).authenticate([trusted]).info.sequence_number == 2


def test_keys_public_refuses_to_overwrite_an_existing_output(
        tmp_path: Path, author_key: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "anchor.pub"
    output.write_bytes(b"another key's public half")
    code, out, err = sfu(capsys, "keys", "public", author_key, "-o", output)
    assert code == errors.UsageError.exit_code and out == ""
    assert "--force" in one_error_line(err)
    assert output.read_bytes() == b"another key's public half"
    assert sfu(capsys, "keys", "public", author_key, "-o", output, "--force")[0] == 0
    assert keys.load_public_half(str(output)).kid == keys.load_public_half(author_key).kid


def test_sign_writes_a_new_output_without_force(
        tmp_path: Path, signing: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert sfu(capsys, *signing, "-o", tmp_path / "new.sfui")[0] == 0
    assert (tmp_path / "new.sfui").stat().st_size > 8000


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_inspect_of_a_truncated_file_says_so_and_fails(
        tmp_path: Path, sign_image: SignImage, as_json: bool,
        capsys: pytest.CaptureFixture[str]) -> None:
    image = sign_image(payload=b"x" * 10_000, sequence=2)
    truncated = tmp_path / "truncated.sfui"
    truncated.write_bytes(image.read_bytes()[:-2500])
    code, out, err = sfu(capsys, "inspect", truncated, *(["--json"] if as_json else []))
    line = one_error_line(err)
    assert line == (f"sfu: error: {truncated} is truncated: its payload is "
                    "declared as 10000 bytes, the file holds 7500 of them")
    assert code == errors.TruncatedError.exit_code
    if as_json:  # the JSON error object (docs/cli.md), with the same message
        assert json.loads(out)["error"] == {"code": 3, "class": "TruncatedError",
                                            "message": line.removeprefix("sfu: error: ")}
    else:
        assert out == ""


def test_inspect_of_a_complete_file_succeeds(sign_image: SignImage,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    image = sign_image(payload=b"x" * 10_000, sequence=2)
    code, out, _ = sfu(capsys, "inspect", "--json", image)
    assert code == 0
    described = json.loads(out)
    assert described["image_size"] == described["payload"]["length"] == 10_000


def test_sign_compress_and_delta_from_write_smaller_payloads_that_inspect_names(
        tmp_path: Path, signing: list[str], author_key: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = sfu(capsys, *signing, "--compress", "zstd", "-o", tmp_path / "z.sfui",
                       "--json")
    signed = json.loads(out)
    assert code == 0 and signed["encoding"] == "zstd"
    assert signed["file_size"] < signed["image_size"] // 10
    new = tmp_path / "new.bin"
    new.write_bytes(b"firmware" * 1000 + b"and a new feature" * 20)
    delta = [signing[0], str(new), *signing[2:]]
    code, out, _ = sfu(capsys, *delta, "--delta-from", tmp_path / "z.sfui",
                       "-o", tmp_path / "d.sfui", "--json")
    assert code == 0 and json.loads(out)["encoding"] == "delta"
    code, out, _ = sfu(capsys, "inspect", tmp_path / "d.sfui", "--json")
    old_digest = signed["image_digest"]
    assert json.loads(out)["encoding"] == f"delta from sha256:{old_digest}"
    public = tmp_path / "author.pub"
    public.write_bytes(keys.public_pem(keys.load_public_half(author_key).public_key))
    code, out, _ = sfu(capsys, "verify", tmp_path / "z.sfui", "--key", public)
    assert code == 0 and "authentic and complete" in out
    code, out, _ = sfu(capsys, "verify", tmp_path / "d.sfui", "--key", public)
    assert code == 0 and "payload NOT checked: a delta" in out


@pytest.mark.parametrize(("extra", "message"), [
    (["--compress", "zstd", "--delta-from", "{z}"], "exclude each other"),
    (["--delta-from", "{d}"], "is itself a delta"),
])
def test_sign_refuses_impossible_encodings(
        tmp_path: Path, signing: list[str], capsys: pytest.CaptureFixture[str],
        extra: list[str], message: str) -> None:
    assert sfu(capsys, *signing, "--compress", "zstd", "-o", tmp_path / "z.sfui")[0] == 0
    assert sfu(capsys, *signing, "--delta-from", tmp_path / "z.sfui",
               "-o", tmp_path / "d.sfui")[0] == 0
    args = [a.format(z=tmp_path / "z.sfui", d=tmp_path / "d.sfui") for a in extra]
    code, _, err = sfu(capsys, *signing, *args, "-o", tmp_path / "x.sfui")
    assert code == errors.UsageError.exit_code
    assert message in one_error_line(err)
    assert not (tmp_path / "x.sfui").exists()


def test_delta_profiles_make_different_patches_of_the_same_image(
        tmp_path: Path, signing: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Each `--delta-profile` reaches the encoder (balanced when none is given): their patches
    differ (the new image holds matches of 16 to 31 bytes, which smallest keeps, balanced
    keeps from 24 bytes and fast drops), and all rebuild the new image from the old one."""
    from sfupdate.formats.delta import apply_patch
    from sfupdate.formats.sfui import EnvelopeReader

    assert sfu(capsys, *signing, "-o", tmp_path / "old.sfui")[0] == 0
    old = (tmp_path / "fw.bin").read_bytes()
    new = tmp_path / "new.bin"
    rng = random.Random(4)
    short_matches = b"".join(rng.randbytes(40) + old[at:at + length]
                             for at, length in zip(range(6000, 9000, 100),
                                                   itertools.cycle((18, 22, 26, 30)),
                                                   strict=False))
    new.write_bytes(bytes(range(256)) * 40 + old[:5000] + b"a new feature" * 50 + old[5000:]
                    + short_matches)
    payloads = {}
    for profile in ("smallest", "balanced", "fast", None):
        out = tmp_path / f"{profile}.sfui"
        chosen = [] if profile is None else ["--delta-profile", profile]
        assert sfu(capsys, signing[0], new, *signing[2:], "--delta-from", tmp_path / "old.sfui",
                   *chosen, "-o", out)[0] == 0
        with open(out, "rb") as f:
            ref = EnvelopeReader(f).payload_ref
            assert ref is not None
            payloads[profile] = f.read(ref.length)

    class Base:
        size = len(old)

        def read_at(self, offset: int, length: int) -> bytes:
            return old[offset:offset + length]

    assert payloads[None] == payloads["balanced"]
    del payloads[None]
    assert len(set(payloads.values())) == 3
    for patch in payloads.values():
        rebuilt = b"".join(apply_patch(iter([patch]), Base(), new.stat().st_size))
        assert rebuilt == new.read_bytes()

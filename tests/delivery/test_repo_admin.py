"""The operator's repository: `add` admits only SFUIs that verify completely, one image per
vendor, class and sequence; `list` shows the index and what is staged; `remove` withdraws an
image in a new signed index version that clients who saw it then follow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sfupdate import errors, keys
from sfupdate.authoring.author import ImageSpec, sign_firmware
from sfupdate.authoring.author.encrypt import PayloadEncryption
from sfupdate.authoring.repo import Repository
from sfupdate.cli.main import main
from sfupdate.formats.sfui import TrustedKey, class_uuid
from sfupdate.keys.files import FileSigner
from sfupdate.richos.client import FileSource, RepositoryIndex, check, update
from tests.conftest import SignImage
from tests.delivery.device import Device
from tests.delivery.netsim import RepoWorld
from tests.world import CLASS, VENDOR

OTHER_CLASS = class_uuid(VENDOR, "other-board")


def local_index(world: RepoWorld) -> RepositoryIndex:
    return world.index(FileSource(world.dir))


def repo_files(world: RepoWorld) -> dict[str, bytes]:
    """Every file of the repository (targets, metadata and the private staging area)."""
    return {str(p.relative_to(world.dir)): p.read_bytes()
            for p in sorted(world.dir.rglob("*")) if p.is_file()}


def cut(image: Path, keep: int, to: Path) -> Path:
    to.parent.mkdir(parents=True, exist_ok=True)
    to.write_bytes(image.read_bytes()[:keep])
    return to


def sfu(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sfu: error: "), err
    return lines[0]


# --- add verifies ----------------------------------------------------------------------------


def test_a_truncated_image_is_not_added(world: RepoWorld, tmp_path: Path) -> None:
    image = world.image(2)
    truncated = cut(image, image.stat().st_size - 1000, tmp_path / "bad" / image.name)
    before = repo_files(world)
    with pytest.raises(errors.PayloadTooShortError, match=rf"{truncated}: payload truncated"):
        world.repo.add(truncated)
    assert repo_files(world) == before  # no stray copy, nothing staged


def test_an_encrypted_image_is_added_on_its_signature_and_length(
        world: RepoWorld, tmp_path: Path, es256_signer: FileSigner) -> None:
    """The repository holds no device key: it checks what it can (signature, the
    ciphertext's length); the device checks the plaintext digest when it decrypts."""
    firmware, image = tmp_path / "fw.bin", tmp_path / "enc" / "fw-enc.sfui"
    firmware.write_bytes(b"secret firmware " * 5000)
    image.parent.mkdir()
    device_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    sign_firmware(firmware, image, es256_signer, ImageSpec(2, VENDOR, CLASS),
                  encryption=PayloadEncryption([device_key]))
    truncated = cut(image, image.stat().st_size - 1, tmp_path / "bad" / image.name)
    with pytest.raises(errors.PayloadTooShortError):
        world.repo.add(truncated)
    assert world.repo.add(image).length == image.stat().st_size


def test_an_image_cut_inside_its_header_is_not_added(world: RepoWorld, tmp_path: Path) -> None:
    image = world.image(2)
    with pytest.raises(errors.TruncatedError):
        world.repo.add(cut(image, 100, tmp_path / "bad" / image.name))


def test_a_tampered_image_is_not_added(world: RepoWorld) -> None:
    image = world.image(2)
    data = bytearray(image.read_bytes())
    data[-500] ^= 1
    image.write_bytes(bytes(data))
    before = repo_files(world)
    with pytest.raises(errors.PayloadDigestError):
        world.repo.add(image)
    assert repo_files(world) == before


def test_an_image_with_bytes_after_it_is_not_added(world: RepoWorld) -> None:
    image = world.image(2)
    with image.open("ab") as f:
        f.write(b"\0")
    with pytest.raises(errors.EncodingError, match="trailing bytes"):
        world.repo.add(image)


def test_only_images_signed_with_a_firmware_key_are_added(
        world: RepoWorld, sign_image: SignImage, eddsa_signer: FileSigner) -> None:
    """An image by another key is refused, unless that add is told to trust the key."""
    other = sign_image(sequence=2, signer=eddsa_signer)
    with pytest.raises(errors.UnknownKeyError):
        world.repo.add(other)
    assert world.repo.add(other, [TrustedKey(eddsa_signer.public_key)]).sequence == 2
    with pytest.raises(errors.UnknownKeyError):  # the extra key was for that add only
        world.repo.add(sign_image(sequence=3, signer=eddsa_signer))


def test_a_repository_made_before_firmware_keys_needs_trust(
        world: RepoWorld, es256_trusted: TrustedKey) -> None:
    """repo.json without firmware keys (an older repository): add refuses rather than admit
    an unverified image, and works when told which key to trust."""
    config = world.dir / ".sfu" / "repo.json"
    old = json.loads(config.read_text())
    del old["firmware_keys"]
    config.write_text(json.dumps(old))
    repo = Repository(world.dir)
    with pytest.raises(errors.UsageError, match=r"knows no firmware key.*--trust"):
        repo.add(world.image(2))
    assert repo.add(world.image(2), [es256_trusted]).sequence == 2


def test_firmware_keys_are_required_at_init(tmp_path: Path, repo_key: Path) -> None:
    with pytest.raises(errors.UsageError, match="at least one firmware key"):
        Repository.init(tmp_path / "r", repo_key, [])
    assert not (tmp_path / "r").exists()


# --- one image per vendor, class and sequence ------------------------------------------------


def test_a_second_image_with_the_same_sequence_is_refused(world: RepoWorld) -> None:
    world.publish(world.image(2))
    again = world.image(2, size=100_000)  # same vendor, class and sequence, other bytes
    before = repo_files(world)
    with pytest.raises(errors.DuplicateImageError,
                       match=r"already has sequence 2 for this vendor and class.*--replace"):
        world.repo.add(again)
    assert repo_files(world) == before
    world.repo.add(world.image(2, klass=OTHER_CLASS))  # another class may use sequence 2


def test_a_staged_image_with_the_same_sequence_is_refused_too(world: RepoWorld) -> None:
    world.repo.add(world.image(2))
    with pytest.raises(errors.DuplicateImageError):
        world.repo.add(world.image(2, size=100_000))


def test_replace_withdraws_the_other_image_in_the_same_publish(world: RepoWorld) -> None:
    old = world.image(2)
    world.publish(old, world.image(3))
    new = world.image(2, size=100_000)
    world.repo.add(new, replace=True)
    world.repo.publish()
    listed = {c.name: c for c in local_index(world).refresh()}
    assert old.name not in listed and listed[new.name].sequence == 2
    assert sorted(c.sequence for c in listed.values()) == [2, 3]


def test_replace_also_replaces_the_same_name(world: RepoWorld, tmp_path: Path) -> None:
    first = world.image(2)
    world.publish(first)
    renamed = tmp_path / "other" / first.name
    renamed.parent.mkdir()
    renamed.write_bytes(world.image(4).read_bytes())
    with pytest.raises(errors.DuplicateImageError, match="with other content"):
        world.repo.add(renamed)
    world.repo.add(renamed, replace=True)
    world.repo.publish()
    [entry] = local_index(world).refresh()
    assert (entry.name, entry.sequence) == (first.name, 4)


# --- list and remove -------------------------------------------------------------------------


def test_list_shows_published_and_staged_changes(world: RepoWorld) -> None:
    two, three, four = world.image(2), world.image(3), world.image(4)
    world.publish(two, three)
    world.repo.add(four)
    world.repo.remove(three.name)
    rows = [(r.entry.name, r.entry.sequence, r.state) for r in world.repo.listing()]
    assert rows == [(two.name, 2, "published"), (three.name, 3, "removal staged"),
                    (four.name, 4, "staged")]


def test_removing_a_staged_image_unstages_it(world: RepoWorld) -> None:
    image = world.image(2)
    world.repo.add(image)
    world.repo.remove(image.name)
    assert world.repo.listing() == []
    world.repo.publish()
    assert local_index(world).refresh() == []


def test_removing_an_unknown_image_is_refused(world: RepoWorld) -> None:
    world.publish(world.image(2))
    with pytest.raises(errors.NotInRepositoryError, match="no such image"):
        world.repo.remove("nothing.sfui")


def test_a_removed_image_is_no_longer_offered_to_a_client_that_saw_it(
        world: RepoWorld, device: Device) -> None:
    """The client was offered 3; 3 is withdrawn (a new signed index version); on its next
    refresh the same client, with the same trusted state, is offered 2 and installs it."""
    two, three = world.image(2), world.image(3)
    world.publish(two, three)
    seen = check(local_index(world), device)
    assert seen.available is not None and seen.available.name == three.name
    targets_version = world.repo.published().targets_version
    world.repo.remove(three.name)
    world.repo.publish()
    assert world.repo.published().targets_version == targets_version + 1
    assert (world.dir / "targets" / f"{seen.available.sha256}.{three.name}").exists()
    result = update(local_index(world), device)
    assert result.check.available is not None and result.check.available.name == two.name
    assert result.installed is not None and result.installed.sequence == 2
    device.assert_trial(2)


# --- command line ----------------------------------------------------------------------------


def test_repo_commands_refuse_bad_images_with_one_line(
        tmp_path: Path, repo_key: Path, firmware_pub: Path, sign_image: SignImage,
        eddsa_signer: FileSigner, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "r"
    assert sfu(capsys, "repo", "init", repo, "--key", repo_key,
               "--firmware-key", firmware_pub)[0] == 0
    image = sign_image(payload=b"v2" * 5000, sequence=2)
    truncated = cut(image, image.stat().st_size - 10, tmp_path / "cut" / "v2.sfui")
    code, _, err = sfu(capsys, "repo", "add", repo, truncated)
    assert code == errors.FormatError.exit_code
    assert "payload truncated" in one_error_line(err)

    other = sign_image(sequence=3, signer=eddsa_signer)
    code, _, err = sfu(capsys, "repo", "add", repo, other)
    assert code == errors.AuthenticationError.exit_code and one_error_line(err)
    other_pub = tmp_path / "other.pub"
    other_pub.write_bytes(keys.public_pem(eddsa_signer.public_key))
    assert sfu(capsys, "repo", "add", repo, other, "--trust", other_pub)[0] == 0

    assert sfu(capsys, "repo", "add", repo, image)[0] == 0
    duplicate = sign_image(payload=b"v2'" * 5000, sequence=2)
    code, _, err = sfu(capsys, "repo", "add", repo, duplicate)
    assert code == errors.DuplicateImageError.exit_code == 2
    assert "--replace" in one_error_line(err)
    code, out, _ = sfu(capsys, "repo", "add", repo, duplicate, "--replace")
    assert code == 0 and f"staged {duplicate.name}: sequence 2" in out


def test_repo_list_and_remove_commands(world: RepoWorld,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    two, three = world.image(2), world.image(3)
    world.publish(two, three)
    code, out, _ = sfu(capsys, "repo", "list", world.dir, "--json")
    assert code == 0
    listed = json.loads(out)
    assert [(r["name"], r["sequence"], r["state"]) for r in listed] == [
        (two.name, 2, "published"), (three.name, 3, "published")]
    assert set(listed[0]) == {"name", "length", "sha256", "sequence", "vendor_id", "class_id",
                              "version", "delta_base", "state"}
    code, out, _ = sfu(capsys, "repo", "remove", world.dir, three.name)
    assert code == 0 and f"staged the removal of {three.name}" in out
    code, out, _ = sfu(capsys, "repo", "list", world.dir)
    assert code == 0 and out.splitlines()[1].endswith("removal staged")
    assert sfu(capsys, "repo", "publish", world.dir)[0] == 0
    code, out, _ = sfu(capsys, "repo", "list", world.dir)
    assert code == 0 and len(out.splitlines()) == 1 and two.name in out
    code, _, err = sfu(capsys, "repo", "remove", world.dir, three.name)
    assert code == errors.NotInRepositoryError.exit_code
    assert three.name in one_error_line(err)

"""The repository's signed index, and the client's selection and hand-off to the agent."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sfupdate import errors
from sfupdate.authoring.author.encrypt import load_recipient_key
from sfupdate.authoring.repo import RepoServer, Repository
from sfupdate.authoring.repo.repository import Published
from sfupdate.cli.main import main
from sfupdate.formats.sfui import TrustedKey, class_uuid
from sfupdate.keys.files import FileSigner
from sfupdate.richos.client import FileSource, RepositoryIndex, check, install_file, update
from tests.conftest import SignImage
from tests.delivery.device import Device
from tests.delivery.netsim import FAST, RepoWorld
from tests.world import CLASS, VENDOR, encrypted_sfui, encryption_public_path

OTHER_CLASS = class_uuid(VENDOR, "other-board")


def local_index(world: RepoWorld) -> RepositoryIndex:
    return world.index(FileSource(world.dir))


def test_published_images_are_listed_with_their_signed_fields(world: RepoWorld) -> None:
    image = world.image(3)
    world.publish(image)
    [entry] = local_index(world).refresh()
    assert (entry.name, entry.sequence, entry.version) == (image.name, 3, "3.0")
    assert (entry.vendor_id, entry.class_id) == (VENDOR, CLASS)
    assert entry.length == image.stat().st_size
    assert entry.path == f"targets/{entry.sha256}.{image.name}"
    assert (world.dir / entry.path).read_bytes() == image.read_bytes()


def test_staged_images_stay_invisible_until_published(world: RepoWorld) -> None:
    world.repo.add(world.image(2))
    assert local_index(world).refresh() == []


def _versions(published: Published) -> tuple[int, int, int]:
    return (published.timestamp_version, published.snapshot_version,
            published.targets_version)


def test_every_publish_raises_the_index_versions(world: RepoWorld) -> None:
    assert _versions(world.repo.published()) == (1, 1, 1)
    world.publish(world.image(2))
    world.publish()
    assert _versions(world.repo.published()) == (3, 3, 3)
    assert len(world.repo.published().targets) == 1


def test_same_name_with_other_content_is_refused(world: RepoWorld, tmp_path: Path) -> None:
    first, second = world.image(2), world.image(3)
    world.publish(first)
    clash = tmp_path / "clash" / first.name
    clash.parent.mkdir()
    clash.write_bytes(second.read_bytes())
    before = sorted((world.dir / "targets").iterdir())
    with pytest.raises(errors.UsageError, match="already in the repository"):
        world.repo.add(clash)
    assert sorted((world.dir / "targets").iterdir()) == before
    world.repo.add(first)  # the same file again is fine


def test_a_file_that_is_not_an_sfui_is_not_added(world: RepoWorld, tmp_path: Path) -> None:
    junk = tmp_path / "junk.sfui"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(errors.FormatError):
        world.repo.add(junk)


def test_init_refuses_an_existing_repository(world: RepoWorld, repo_key: Path,
                                             es256_trusted: TrustedKey) -> None:
    with pytest.raises(errors.UsageError, match="already a repository"):
        Repository.init(world.dir, repo_key, [es256_trusted])


def test_trusted_metadata_persists_between_runs(world: RepoWorld) -> None:
    world.publish(world.image(2))
    local_index(world).refresh()
    again = RepositoryIndex(FileSource(world.dir), world.state, None, FAST)
    assert [c.sequence for c in again.refresh()] == [2]


def test_update_picks_the_newest_image_for_this_device_class(world: RepoWorld,
                                                            device: Device) -> None:
    world.publish(world.image(2), world.image(3), world.image(9, klass=OTHER_CLASS))
    progress: list[tuple[int, int]] = []
    result = update(local_index(world), device, progress=lambda d, t: progress.append((d, t)))
    assert result.check.available is not None and result.check.available.sequence == 3
    assert result.installed is not None and result.installed.sequence == 3
    assert progress[-1][0] == progress[-1][1] == result.check.available.length
    device.assert_trial(3)


def test_an_image_encrypted_for_another_device_is_passed_over_for_one_for_this_one(
        world: RepoWorld, device: Device, tmp_path: Path, es256_signer: FileSigner) -> None:
    """Through the TUF index and the client: the newest image is encrypted for another
    device, so this device's agent refuses it (it cannot even unwrap its key) and the client
    falls back to the image encrypted for this device, which installs."""
    this_device = load_recipient_key(encryption_public_path(device.agent.board))
    other_device = ec.generate_private_key(ec.SECP256R1()).public_key()

    def encrypted(sequence: int, recipient: ec.EllipticCurvePublicKey) -> Path:
        return encrypted_sfui(tmp_path, es256_signer, sequence, [recipient],
                              f"secret firmware {sequence} ".encode() * 4000)

    world.publish(encrypted(2, this_device), encrypted(3, other_device))
    log: list[str] = []
    result = update(local_index(world), device, log=log.append)
    assert result.installed is not None and result.installed.sequence == 2
    assert any("is encrypted for" in line for line in log), log
    device.assert_trial(2)


def test_check_says_up_to_date_when_nothing_is_newer(world: RepoWorld, device: Device) -> None:
    world.publish(world.image(2), world.image(3))
    assert update(local_index(world), device).installed is not None
    device.update_to(3)
    result = check(local_index(world), device)
    assert result.available is None and result.to_json()["update_available"] is False
    assert result.running_sequence == result.rollback_floor == 3
    assert update(local_index(world), device).installed is None
    assert device.sessions == 1


def test_images_below_the_rollback_floor_are_not_offered(world: RepoWorld,
                                                         device: Device) -> None:
    """Once 3 is confirmed, an index still listing 2 offers nothing; and 2 forced in from
    local media is refused by the agent as a downgrade."""
    two, three = world.image(2), world.image(3)
    world.publish(three)
    update(local_index(world), device)
    device.update_to(3)
    world.publish(two)
    assert check(local_index(world), device).available is None
    confirmed = device.status()
    with pytest.raises(errors.DowngradeError, match="not above"):
        install_file(two, device)
    assert device.status() == confirmed


def test_update_from_local_media(sign_image: SignImage, device: Device) -> None:
    image = sign_image(b"v2" * 5000, sequence=2)
    installed = install_file(image, device)
    assert installed.sequence == 2
    device.assert_trial(2, hashlib.sha256(b"v2" * 5000).hexdigest())


def test_tampered_image_from_local_media_is_refused(sign_image: SignImage,
                                                    device: Device) -> None:
    image = sign_image(b"v2" * 5000, sequence=2)
    data = bytearray(image.read_bytes())
    data[-100] ^= 1
    image.write_bytes(bytes(data))
    with pytest.raises(errors.PayloadDigestError):
        install_file(image, device)
    device.assert_unchanged()


# --- command line ----------------------------------------------------------------------------


def test_repo_commands_build_a_repository(tmp_path: Path, repo_key: Path,
                                          sign_image: SignImage, firmware_pub: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "r"
    image = sign_image(sequence=4, version_text="4.1")
    assert main(["repo", "init", str(repo), "--key", str(repo_key), "--firmware-key",
                 str(firmware_pub), "--expires-days", "3"]) == 0
    assert main(["repo", "add", str(repo), str(image)]) == 0
    assert main(["repo", "publish", str(repo)]) == 0
    out = capsys.readouterr().out
    assert "trusted root" in out and "sequence 4 (version 4.1)" in out
    assert "published index version 2 (1 image)" in out
    timestamp = json.loads((repo / "metadata" / "timestamp.json").read_text())
    assert timestamp["signed"]["version"] == 2
    assert main(["repo", "init", str(repo), "--key", str(repo_key), "--firmware-key",
                 str(firmware_pub)]) == 2
    assert "already a repository" in capsys.readouterr().err


def test_client_needs_a_trusted_root_on_first_use(tmp_path: Path, world: RepoWorld,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["client", "check", "--repo", str(world.dir), "--socket", str(tmp_path / "s"),
                 "--state-dir", str(tmp_path / "state")])
    assert code == errors.UsageError.exit_code
    err = capsys.readouterr().err
    assert err.startswith("sfu: error: no trusted root") and err.count("\n") == 1


def test_client_reports_an_unreachable_agent(tmp_path: Path, world: RepoWorld,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    world.publish(world.image(2))
    code = main(["client", "check", "--repo", str(world.dir), "--socket", str(tmp_path / "s"),
                 "--state-dir", str(tmp_path / "state"), "--trusted-root",
                 str(world.trusted_root)])
    assert code == errors.IpcError.exit_code
    assert capsys.readouterr().err.startswith("sfu: error: ")


def test_client_commands_check_then_update(tmp_path: Path, world: RepoWorld, device: Device,
                                           dev_server: Callable[[Path], RepoServer],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`sfu client check/update` over HTTP from `sfu serve`, into the real agent's socket."""
    from sfupdate.cli import delivery_cmds

    world.publish(world.image(2), world.image(3, size=240_000))
    common = ["--repo", dev_server(world.dir).url, "--socket", str(device.agent.socket),
              "--state-dir", str(tmp_path / "state"), "--trusted-root", str(world.trusted_root)]
    assert main(["client", "check", *common, "--json"]) == delivery_cmds.EXIT_UPDATE_AVAILABLE
    report = json.loads(capsys.readouterr().out)
    assert report["update_available"] is True and report["available"]["sequence"] == 3
    assert (report["running_sequence"], report["rollback_floor"]) == (1, 1)
    assert main(["client", "update", *common, "--progress", "lines"]) == 0
    captured = capsys.readouterr()
    assert "installed sequence 3 into slot B" in captured.out
    progress_lines = [line for line in captured.err.splitlines() if "updating:" in line]
    assert progress_lines  # plain lines, as asked
    assert all(line.startswith("sfu: updating: ") for line in progress_lines)
    assert progress_lines[-1] == "sfu: updating: 100% (0.2 of 0.2 MiB)"
    device.assert_trial(3)
    device.update_to(3)
    assert main(["client", "check", *common]) == 0
    assert capsys.readouterr().out.startswith("up to date: device runs sequence 3")
    assert main(["client", "update", *common]) == 0
    assert capsys.readouterr().out.startswith("up to date: device runs sequence 3")

"""Network attacks on the client, one test each (python-tuf's attack tests are the model).

Each test builds a hostile world: a real repository, a real HTTP server on 127.0.0.1 that
misbehaves on purpose, and the client streaming into a real agent process on a provisioned
sim board. Each asserts the error class, that the message says what happened, and the device
state afterwards: on a refusal it still runs its confirmed image with the same floor and no
trial; on success the new image is recorded as the trial.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sfupdate import errors
from sfupdate.authoring.repo import Repository
from sfupdate.formats.sfui import TrustedKey
from sfupdate.richos.client import check, update
from tests.conftest import SignImage
from tests.delivery.device import Device
from tests.delivery.netsim import (
    HostileServer,
    RepoWorld,
    drip,
    drop_once,
    endless,
    pause_halfway,
    serve,
    stall_after,
    target_path,
)

Hostile = Callable[[Path], HostileServer]


def test_wrong_bytes_from_server_are_refused(world: RepoWorld, hostile: Hostile,
                                             device: Device) -> None:
    image = world.image(2)
    tree = world.publish(image)
    server = hostile(tree)
    data = bytearray(image.read_bytes())
    data[50_000:50_100] = os.urandom(100)  # inside the payload: the header still verifies
    server.routes[target_path(image)] = serve(bytes(data))
    with pytest.raises(errors.DownloadError, match="do not match the signed index"):
        update(world.index(server.url), device)
    assert device.sessions == 1
    device.assert_unchanged()


def test_garbage_from_server_is_refused_by_the_agent(world: RepoWorld, hostile: Hostile,
                                                     device: Device) -> None:
    """E.g. a captive portal's HTML page instead of the image: the agent refuses it as soon
    as its first bytes reach it, before the client could compare digests (the pause makes
    the client hand over what it holds before the rest arrives)."""
    image = world.image(2)
    tree = world.publish(image)
    server = hostile(tree)
    page = b"<html><body>Please log in to the hotel Wi-Fi</body></html>"
    server.routes[target_path(image)] = pause_halfway(page.ljust(image.stat().st_size), 0.3)
    with pytest.raises(errors.FormatError, match=r"CBOR|SFUI"):
        update(world.index(server.url), device)
    device.assert_unchanged()


def test_authentic_image_from_another_publish_is_not_completed(
        world: RepoWorld, hostile: Hostile, device: Device) -> None:
    """Index and image from different publishes (mix-and-match of image and index): the
    substitute is a validly signed SFUI the agent would accept, yet it never completes."""
    listed, other = world.image(2), world.image(3)
    assert listed.stat().st_size == other.stat().st_size
    tree = world.publish(listed)
    server = hostile(tree)
    server.routes[target_path(listed)] = serve(other.read_bytes())
    with pytest.raises(errors.DownloadError, match="wrong or substituted file"):
        update(world.index(server.url), device)
    assert device.sessions == 1  # the stream reached the agent, but not its last bytes
    device.assert_unchanged()


def test_endless_data_is_cut_off_at_the_declared_size(world: RepoWorld, hostile: Hostile,
                                                      device: Device) -> None:
    image = world.image(2)
    tree = world.publish(image)
    server = hostile(tree)
    server.routes[target_path(image)] = endless(image.read_bytes())
    with pytest.raises(errors.DownloadError, match=r"more than the \d+ bytes.*endless data"):
        update(world.index(server.url), device)
    device.assert_unchanged()


def test_stalled_server_is_abandoned(world: RepoWorld, hostile: Hostile,
                                     device: Device) -> None:
    image = world.image(2)
    tree = world.publish(image)
    server = hostile(tree)
    server.routes[target_path(image)] = stall_after(image.read_bytes(), 1000)
    with pytest.raises(errors.DownloadError, match=r"stalled.*giving up after 3 attempts"):
        update(world.index(server.url), device)
    assert len(server.fetched("/targets/")) == 3  # bounded retries, each resuming
    device.assert_unchanged()


def test_slow_retrieval_is_abandoned(world: RepoWorld, hostile: Hostile,
                                     device: Device) -> None:
    image = world.image(2)
    tree = world.publish(image)
    server = hostile(tree)
    server.routes[target_path(image)] = drip(image.read_bytes(), every=0.01)
    with pytest.raises(errors.DownloadError, match=r"too slow.*slow retrieval"):
        update(world.index(server.url), device)
    device.assert_unchanged()


def test_dropped_connection_is_resumed_with_range(world: RepoWorld, hostile: Hostile,
                                                  device: Device) -> None:
    """The connection drops halfway; the client resumes with Range from the byte it reached,
    inside the SAME agent install session (the agent never sees the break), and the update
    completes."""
    image = world.image(2)
    tree = world.publish(image)
    server = hostile(tree)
    cut = image.stat().st_size // 2
    server.routes[target_path(image)] = drop_once(image.read_bytes(), cut)
    log: list[str] = []
    result = update(world.index(server.url, log=log.append), device)
    assert result.installed is not None and result.installed.sequence == 2
    assert server.fetched("/targets/") == [(target_path(image), None),
                                           (target_path(image), f"bytes={cut}-")]
    assert any(f"resuming at byte {cut}" in line for line in log)
    assert device.sessions == 1
    payload = hashlib.sha256(str(2).encode()).digest() * (200_000 // 32)
    device.assert_trial(2, hashlib.sha256(payload).hexdigest())
    assert device.reboot().healthy  # the resumed image boots: its bytes verify in the slot


def test_resume_works_with_a_server_that_ignores_range(world: RepoWorld, hostile: Hostile,
                                                       device: Device) -> None:
    image = world.image(2)
    tree = world.publish(image)
    server = hostile(tree)
    server.routes[target_path(image)] = drop_once(image.read_bytes(), 70_000,
                                                  honour_range=False)
    result = update(world.index(server.url), device)
    assert result.installed is not None and result.installed.sequence == 2
    assert server.fetched("/targets/")[1] == (target_path(image), "bytes=70000-")
    assert device.sessions == 1
    device.assert_trial(2)


def test_stale_index_is_refused(world: RepoWorld, hostile: Hostile,
                                device: Device) -> None:
    """Freeze: a validly signed index that is past its expiry (a mirror stuck in time)."""
    image = world.image(2)
    tree = world.publish(image, now=datetime.now(UTC) - timedelta(days=30))
    server = hostile(tree)
    with pytest.raises(errors.RepositoryError, match=r"stale.*expired"):
        update(world.index(server.url), device)
    assert server.fetched("/targets/") == []
    device.assert_unchanged()


def test_frozen_mirror_is_refused_once_its_index_expires(world: RepoWorld, hostile: Hostile,
                                                         device: Device) -> None:
    """Freeze after the fact: the client saw this index while it was fresh; the mirror then
    stops updating, and the same (validly signed) index must be refused after its expiry."""
    almost_expired = datetime.now(UTC) - timedelta(days=7) + timedelta(seconds=2)
    tree = world.publish(world.image(2), now=almost_expired)
    server = hostile(tree)
    assert check(world.index(server.url), device).available is not None
    time.sleep(max(0.0, (almost_expired + timedelta(days=7) - datetime.now(UTC))
                   .total_seconds()) + 1.0)
    with pytest.raises(errors.RepositoryError, match=r"stale.*expired"):
        update(world.index(server.url), device)
    assert server.fetched("/targets/") == []
    device.assert_unchanged()


def test_endless_index_file_is_cut_off(world: RepoWorld, hostile: Hostile,
                                       device: Device) -> None:
    tree = world.publish(world.image(2))
    server = hostile(tree)
    server.routes["/metadata/timestamp.json"] = endless(
        (tree / "metadata" / "timestamp.json").read_bytes())
    with pytest.raises(errors.DownloadError, match=r"timestamp.json: index file too long.*endless"):
        update(world.index(server.url), device)
    assert server.fetched("/targets/") == []
    device.assert_unchanged()


def test_index_signed_by_another_key_is_refused(world: RepoWorld, hostile: Hostile,
                                                device: Device, tmp_path: Path,
                                                sign_image: SignImage,
                                                es256_trusted: TrustedKey) -> None:
    from sfupdate import keys

    image = world.image(2)
    world.publish(image)
    other_key = tmp_path / "other.pem"
    keys.write_private_key(keys.generate_private_key("ES256"), other_key)
    impostor = Repository.init(tmp_path / "impostor", other_key, [es256_trusted])
    impostor.add(image)
    impostor.publish()
    server = hostile(tmp_path / "impostor")
    with pytest.raises(errors.RepositoryError, match="not signed by the trusted"):
        update(world.index(server.url), device)
    assert server.fetched("/targets/") == []
    device.assert_unchanged()


def test_index_older_than_one_seen_is_refused(world: RepoWorld, hostile: Hostile,
                                              device: Device) -> None:
    """Rollback: after seeing publish 2, the client is served publish 1 again."""
    old = world.publish(world.image(2))
    new = world.publish(world.image(3))
    assert update(world.index(hostile(new).url), device).installed is not None
    device.update_to(3)
    after_update = device.status()
    server = hostile(old)
    with pytest.raises(errors.RepositoryError, match=r"older than one already seen.*rollback"):
        update(world.index(server.url), device)
    assert server.fetched("/targets/") == []
    assert device.sessions == 1
    assert device.status() == after_update


def test_index_files_from_different_publishes_are_refused(world: RepoWorld, hostile: Hostile,
                                                          device: Device) -> None:
    """Mix-and-match of metadata: the newest timestamp and snapshot, an older targets."""
    first = world.publish(world.image(2))
    second = world.publish(world.image(3))
    server = hostile(second)
    server.routes["/metadata/3.targets.json"] = serve(
        (first / "metadata" / "2.targets.json").read_bytes())
    with pytest.raises(errors.RepositoryError, match=r"different publishes.*mix-and-match"):
        update(world.index(server.url), device)
    assert server.fetched("/targets/") == []
    device.assert_unchanged()

"""Repository keys per TUF role (issue 14 item 4): one key per role at init, the signing keys
given per publish (or remembered for the online roles), key rotation through a new root
version that real python-tuf clients follow, and `sfu repo status`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sfupdate import keys
from sfupdate.authoring.repo import Repository
from sfupdate.richos.client import FileSource, RepositoryIndex, TransferPolicy
from tests.afterattack.support import refused, run
from tests.conftest import SignImage

ROLES = ("root", "targets", "snapshot", "timestamp")


@pytest.fixture
def role_keys(tmp_path: Path) -> dict[str, Path]:
    """One key file per role (Ed25519 root, P-256 online roles), plus spares for rotations."""
    made = {}
    for name in (*ROLES, "timestamp2", "root2", "stranger"):
        made[name] = tmp_path / "keys" / f"{name}.key"
        made[name].parent.mkdir(exist_ok=True)
        keys.write_private_key(keys.generate_private_key("Ed25519" if "root" in name
                                                         else "ESP256"), made[name])
    return made


@pytest.fixture
def repo(tmp_path: Path, role_keys: dict[str, Path], firmware_pub: Path,
         capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "repo"
    code, _, err = run(capsys, "repo", "init", path, "--firmware-key", firmware_pub,
                       *[arg for role in ROLES for arg in (f"--{role}-key", role_keys[role])])
    assert code == 0, err
    return path


def _status(capsys: pytest.CaptureFixture[str], repo: Path) -> dict[str, dict[str, object]]:
    code, out, err = run(capsys, "repo", "status", repo, "--json")
    assert code == 0, err
    return {row["role"]: row for row in json.loads(out)}


def _client(repo: Path, state: Path) -> RepositoryIndex:
    """A python-tuf client that was given root v1 out of band (and keeps its state)."""
    return RepositoryIndex(FileSource(repo), state, repo / "metadata" / "1.root.json",
                           TransferPolicy())


def _keyid(path: Path) -> str:
    from securesystemslib.signer import SSlibKey

    return str(SSlibKey.from_crypto(keys.load_public_half(path).public_key).keyid)


def test_init_takes_one_key_per_role_and_remembers_only_the_online_ones(
        repo: Path, role_keys: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    status = _status(capsys, repo)
    assert list(status) == list(ROLES)
    for role in ROLES:
        assert status[role]["keyids"] == [_keyid(role_keys[role])]
        assert status[role]["version"] == 1 and status[role]["threshold"] == 1
        assert status[role]["expired"] is False
    assert status["root"]["keys"] == []  # root stays offline: never remembered
    assert status["timestamp"]["keys"] == [str(role_keys["timestamp"].resolve())]
    assert 6 * 86400 < int(str(status["timestamp"]["seconds_left"])) <= 7 * 86400
    code, out, _ = run(capsys, "repo", "status", repo)
    assert code == 0 and "timestamp  version 1" in out and "signs with" in out


def test_init_key_is_the_shorthand_for_the_roles_not_given(
        tmp_path: Path, role_keys: dict[str, Path], firmware_pub: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "mixed"
    assert run(capsys, "repo", "init", repo, "--key", role_keys["targets"], "--timestamp-key",
               role_keys["timestamp"], "--firmware-key", firmware_pub)[0] == 0
    status = _status(capsys, repo)
    assert [status[r]["keyids"] for r in ROLES] == [[_keyid(role_keys["targets"])]] * 3 + [
        [_keyid(role_keys["timestamp"])]]
    line = refused(capsys, 2, "repo", "init", tmp_path / "none", "--targets-key",
                   role_keys["targets"], "--firmware-key", firmware_pub)
    assert "--root-key" in line and "--snapshot-key" in line


def test_publish_with_given_keys_checks_them_against_the_root(
        repo: Path, tmp_path: Path, role_keys: dict[str, Path], sign_image: SignImage,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "repo", "add", repo, sign_image(sequence=2))[0] == 0
    line = refused(capsys, 6, "repo", "publish", repo, "--key",
                   f"timestamp={role_keys['stranger']}")
    assert "is not a timestamp key of this repository" in line
    line = refused(capsys, 6, "repo", "publish", repo, "--key",
                   f"targets={role_keys['timestamp']}")
    assert "is not a targets key" in line
    assert "ROLE=KEY" in refused(capsys, 2, "repo", "publish", repo, "--key", "nobody=x")
    (repo / ".sfu" / "keys.json").unlink()  # nothing remembered: the keys file names them
    assert "no key for the targets role" in refused(capsys, 6, "repo", "publish", repo)
    line = refused(capsys, 6, "repo", "rotate", repo, "timestamp", "--new-key",
                   role_keys["timestamp2"], "--root-key", role_keys["root"])
    assert "no key for the targets role" in line
    assert not (repo / "metadata" / "2.root.json").exists()  # checked before the new root
    keys_file = tmp_path / "keys" / "online.json"
    keys_file.write_text(json.dumps({r: [f"{r}.key"] for r in ROLES[1:]}))
    code, _, err = run(capsys, "repo", "publish", repo, "--keys-file", keys_file)
    assert code == 0, err
    bad = tmp_path / "bad.json"
    for text, says in (("{", "not JSON"), ('{"root": ["root.key"]}', "ROLE one of targets"),
                       ('{"targets": "t.key"}', "expected {ROLE: [KEY, ...]}")):
        bad.write_text(text)
        assert says in refused(capsys, 2, "repo", "publish", repo, "--keys-file", bad)
    assert [c.sequence for c in _client(repo, tmp_path / "state").refresh()] == [2]


def test_a_client_that_trusted_root_v1_follows_key_rotations(
        repo: Path, tmp_path: Path, role_keys: dict[str, Path], sign_image: SignImage,
        capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "client-state"
    assert run(capsys, "repo", "add", repo, sign_image(sequence=2))[0] == 0
    assert run(capsys, "repo", "publish", repo)[0] == 0
    assert [c.sequence for c in _client(repo, state).refresh()] == [2]

    # The timestamp key is replaced: root v2, signed by the root key; published at once.
    code, out, err = run(capsys, "repo", "rotate", repo, "timestamp", "--new-key",
                         role_keys["timestamp2"], "--root-key", role_keys["root"], "--json")
    assert code == 0, err
    assert json.loads(out) == {"repository": str(repo), "role": "timestamp", "root_version": 2,
                               "root": str(repo / "metadata" / "2.root.json")}
    assert run(capsys, "repo", "add", repo, sign_image(sequence=3))[0] == 0
    assert run(capsys, "repo", "publish", repo)[0] == 0  # the new key was remembered
    assert [c.sequence for c in _client(repo, state).refresh()] == [2, 3]
    assert json.loads((state / "root.json").read_text())["signed"]["version"] == 2
    line = refused(capsys, 6, "repo", "publish", repo, "--key",
                   f"timestamp={role_keys['timestamp']}")
    assert "root version 2" in line  # the old key signs no more

    # The root key itself: root v3 is signed by the old and the new root key.
    line = refused(capsys, 6, "repo", "rotate", repo, "root", "--new-key", role_keys["root2"],
                   "--root-key", role_keys["stranger"])
    assert "is not a root key" in line
    assert run(capsys, "repo", "rotate", repo, "root", "--new-key", role_keys["root2"],
               "--root-key", role_keys["root"])[0] == 0
    v3 = json.loads((repo / "metadata" / "3.root.json").read_text())
    assert {s["keyid"] for s in v3["signatures"]} == {_keyid(role_keys["root"]),
                                                      _keyid(role_keys["root2"])}
    assert run(capsys, "repo", "add", repo, sign_image(sequence=4))[0] == 0
    assert run(capsys, "repo", "publish", repo)[0] == 0
    assert [c.sequence for c in _client(repo, state).refresh()] == [2, 3, 4]
    # A device provisioned long ago with root v1 walks the chain v1 -> v2 -> v3.
    fresh = tmp_path / "fresh-state"
    assert [c.sequence for c in _client(repo, fresh).refresh()] == [2, 3, 4]
    assert json.loads((fresh / "root.json").read_text())["signed"]["version"] == 3
    # The old root key can no longer rotate anything.
    line = refused(capsys, 6, "repo", "rotate", repo, "targets", "--new-key",
                   role_keys["stranger"], "--root-key", role_keys["root"])
    assert "is not a root key of this repository (root version 3)" in line
    assert _status(capsys, repo)["root"]["version"] == 3


def test_status_says_when_the_timestamp_has_expired(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Repository(repo).publish(datetime.now(UTC) - timedelta(days=30))
    status = _status(capsys, repo)
    assert status["timestamp"]["expired"] is True
    assert int(str(status["timestamp"]["seconds_left"])) < 0
    code, out, _ = run(capsys, "repo", "status", repo)
    assert code == 0 and "EXPIRED: publish now" in out
    assert run(capsys, "repo", "publish", repo)[0] == 0  # what the timer runs
    assert _status(capsys, repo)["timestamp"]["expired"] is False


def test_a_repository_made_before_keys_per_role_still_publishes(
        repo: Path, role_keys: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Format 1 kept every role's key paths in repo.json (and no keys.json)."""
    config = json.loads((repo / ".sfu" / "repo.json").read_text())
    config["format"] = 1
    for role in ROLES:
        config["roles"][role].update(keys=[str(role_keys[role])], threshold=1)
    (repo / ".sfu" / "repo.json").write_text(json.dumps(config))
    (repo / ".sfu" / "keys.json").unlink()
    assert run(capsys, "repo", "publish", repo)[0] == 0
    status = _status(capsys, repo)
    assert status["targets"]["version"] == 2
    assert status["snapshot"]["keys"] == [str(role_keys["snapshot"])]

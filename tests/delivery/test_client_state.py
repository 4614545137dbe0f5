"""The client's state and trust (issue 16 item 4): a `--trusted-root` on the command line wins
over (is checked against) the stored one, a failed first run leaves no state, and
`sfu client status` shows where the state is. Real repositories, `sfu serve` and the agent."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from sfupdate import errors, keys
from sfupdate.authoring.repo import RepoServer
from sfupdate.cli.delivery_cmds import EXIT_UPDATE_AVAILABLE
from sfupdate.cli.main import main
from sfupdate.formats.sfui import TrustedKey
from tests.conftest import SignImage
from tests.delivery.device import Device
from tests.delivery.netsim import RepoWorld


@pytest.fixture
def other_world(tmp_path: Path, sign_image: SignImage, es256_trusted: TrustedKey) -> RepoWorld:
    """Another repository (its own index key, so another root) with the same images."""
    key = tmp_path / "other-repo-key.pem"
    keys.write_private_key(keys.generate_private_key("ES256"), key)
    return RepoWorld(tmp_path / "other", key, sign_image, [es256_trusted])


def _check(url: str, device: Device, state: Path, root: Path | None) -> int:
    args = ["client", "check", "--repo", url, "--socket", str(device.agent.socket),
            "--state-dir", str(state)]
    return main(args + (["--trusted-root", str(root)] if root else []))


def test_a_wrong_first_root_leaves_nothing_and_the_right_one_then_works(
        tmp_path: Path, world: RepoWorld, other_world: RepoWorld, device: Device,
        dev_server: Callable[[Path], RepoServer], capsys: pytest.CaptureFixture[str]) -> None:
    world.publish(world.image(2))
    url, state = dev_server(world.dir).url, tmp_path / "state"
    assert _check(url, device, state, other_world.trusted_root) == errors.RepositoryError.exit_code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not signed by the trusted repository keys" in err
    assert not state.exists()  # the failed first run kept nothing
    assert _check(url, device, state, world.trusted_root) == EXIT_UPDATE_AVAILABLE
    assert _check(url, device, state, None) == EXIT_UPDATE_AVAILABLE  # now it is stored


def test_the_root_on_the_command_line_wins_over_the_stored_one(
        tmp_path: Path, world: RepoWorld, other_world: RepoWorld, device: Device,
        dev_server: Callable[[Path], RepoServer], capsys: pytest.CaptureFixture[str]) -> None:
    """A state trusting another repository's root (the device was pointed elsewhere before):
    without --trusted-root the index is refused with a hint; with it, the given root wins."""
    world.publish(world.image(2))
    other_world.publish(other_world.image(3))
    state = tmp_path / "state"
    other_url = dev_server(other_world.dir).url
    assert _check(other_url, device, state, other_world.trusted_root) == EXIT_UPDATE_AVAILABLE
    url = dev_server(world.dir).url
    capsys.readouterr()
    assert _check(url, device, state, None) == errors.RepositoryError.exit_code
    err = capsys.readouterr().err
    assert str(state) in err and "--trusted-root" in err and err.count("\n") == 1
    assert _check(url, device, state, world.trusted_root) == EXIT_UPDATE_AVAILABLE
    err = capsys.readouterr().err
    assert "is not the root this client trusted" in err and "starting over" in err
    assert _check(url, device, state, world.trusted_root) == EXIT_UPDATE_AVAILABLE
    assert "starting over" not in capsys.readouterr().err  # the same root: nothing to say


def test_client_status_shows_the_state_directory(
        tmp_path: Path, world: RepoWorld, device: Device, monkeypatch: pytest.MonkeyPatch,
        dev_server: Callable[[Path], RepoServer], capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    world.publish(world.image(2))
    url = dev_server(world.dir).url
    assert main(["client", "status", "--repo", url, "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    state = Path(before["state_dir"])
    assert state.is_relative_to(tmp_path / "xdg" / "sfupdate" / "repos")
    assert (before["trusted"], before["root"], before["index"]) == (False, None, None)
    assert main(["client", "check", "--repo", url, "--socket", str(device.agent.socket),
                 "--trusted-root", str(world.trusted_root)]) == EXIT_UPDATE_AVAILABLE
    capsys.readouterr()
    assert main(["client", "status", "--repo", url, "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["state_dir"] == str(state) and after["trusted"] is True
    assert after["root"]["version"] == 1 and after["index"]["version"] == 2
    assert main(["client", "status", "--repo", url]) == 0
    text = capsys.readouterr().out
    assert f"state directory  {state}\n" in text and "index            version 2" in text

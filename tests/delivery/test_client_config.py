"""The client reads the device configuration (issue 11 item 2): `sfu client --config
device.toml update` takes its repository, trusted root, state directory and the agent's socket
from the file's `[client]` table and `[device]` socket, options win over the file, and a bad
file is one clear usage error. Real repository, `sfu serve` and agent."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from sfupdate import errors
from sfupdate.authoring.repo import RepoServer
from sfupdate.cli.main import main
from tests.delivery.device import Device
from tests.delivery.netsim import RepoWorld


def _config(tmp_path: Path, url: str, world: RepoWorld, device: Device) -> Path:
    path = tmp_path / "device.toml"
    path.write_text(f'[device]\nsocket = "{device.agent.socket}"\n\n'
                    f'[client]\nrepository = "{url}"\n'
                    f'trusted_root = "{world.trusted_root}"\n'
                    f'state_dir = "{tmp_path / "client-state"}"\npoll_interval = 60\n')
    return path


def test_update_takes_everything_from_the_configuration(
        tmp_path: Path, world: RepoWorld, device: Device,
        dev_server: Callable[[Path], RepoServer], capsys: pytest.CaptureFixture[str]) -> None:
    world.publish(world.image(2))
    config = _config(tmp_path, dev_server(world.dir).url, world, device)
    assert main(["client", "--config", str(config), "update"]) == 0
    assert "installed sequence 2" in capsys.readouterr().out
    assert (tmp_path / "client-state").is_dir()  # the state directory the file names


def test_an_option_on_the_command_line_wins_over_the_file(
        tmp_path: Path, world: RepoWorld, device: Device,
        dev_server: Callable[[Path], RepoServer], capsys: pytest.CaptureFixture[str]) -> None:
    world.publish(world.image(2))
    config = _config(tmp_path, "http://127.0.0.1:9/nothing-listens-here/", world, device)
    url = dev_server(world.dir).url
    assert main(["client", "--config", str(config), "check", "--repo", url]) == 100
    assert "update available" in capsys.readouterr().out


@pytest.mark.parametrize(("text", "message"), [
    ("[client]\nrepository = 3\n", r"\[client\] repository has the wrong type"),
    ("[client]\nrepo = 'x'\n", r"\[client\] has unknown keys: repo"),
    ("[client]\ntrusted_root = 'root.json'\n", "trusted_root must be an absolute path"),
    ("[client]\npoll_interval = 0\n", "poll_interval must be between"),
    ("[client\n", "not valid TOML"),
])
def test_a_bad_configuration_is_one_usage_error(
        tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "device.toml"
    config.write_text(text)
    assert main(["client", "--config", str(config), "status"]) == errors.UsageError.exit_code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(config) in err
    assert re.search(message, err)

"""`sfu client watch`: an SFUI or a static repository appearing on local media is installed once
into a real agent, and never again (the digest is remembered in the state directory)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sfupdate.errors import DowngradeError
from sfupdate.richos.client.watch import Watcher
from tests.conftest import SignImage
from tests.delivery.device import Device
from tests.delivery.netsim import FAST, RepoWorld


def test_an_sfui_copied_onto_the_medium_is_installed_once(tmp_path: Path, sign_image: SignImage,
                                                          device: Device) -> None:
    media, state = tmp_path / "media", tmp_path / "state"
    media.mkdir()
    watcher = Watcher(media, device, state, policy=FAST)
    assert watcher.poll() == []
    image = sign_image(b"firmware v2 " * 500, sequence=2)
    (media / "updates").mkdir()
    shutil.copy(image, media / "updates" / "fw.sfui")
    assert watcher.poll() == []  # not settled yet: the copy may still be running
    [outcome] = watcher.poll()
    assert outcome.installed is not None and outcome.installed.sequence == 2
    assert watcher.poll() == []
    device.assert_trial(2)
    # another run (after a restart, or the medium plugged in again): not reinstalled
    again = Watcher(media, device, state, policy=FAST)
    again.poll()
    [outcome] = again.poll()
    assert outcome.up_to_date and outcome.installed is None
    assert device.sessions == 1
    remembered = json.loads((state / "installed.json").read_text())["images"]
    assert [e["result"] for e in remembered] == ["installed sequence 2"]


def test_a_refused_image_is_not_offered_again(tmp_path: Path, sign_image: SignImage,
                                              device: Device) -> None:
    media, state = tmp_path / "media", tmp_path / "state"
    media.mkdir()
    shutil.copy(sign_image(b"old firmware", sequence=1), media / "old.sfui")
    watcher = Watcher(media, device, state, policy=FAST)
    watcher.poll()
    [outcome] = watcher.poll()
    assert isinstance(outcome.error, DowngradeError)
    assert watcher.poll() == []
    again = Watcher(media, device, state, policy=FAST)
    again.poll()
    [outcome] = again.poll()
    assert outcome.up_to_date and device.sessions == 1
    device.assert_unchanged()


def test_a_static_repository_tree_is_installed_through_its_index(
        tmp_path: Path, world: RepoWorld, device: Device) -> None:
    media, state = tmp_path / "media", tmp_path / "state"
    shutil.copytree(world.publish(world.image(2), world.image(3)), media / "acme" / "repo")
    watcher = Watcher(media, device, state, world.trusted_root, FAST)
    watcher.poll()
    [outcome] = watcher.poll()
    assert outcome.kind == "repository" and outcome.item == media / "acme" / "repo"
    assert outcome.installed is not None and outcome.installed.sequence == 3
    device.assert_trial(3)
    # the trial waits for a reboot: a new watcher does not install sequence 3 again
    fresh = Watcher(media, device, state, world.trusted_root, FAST)
    fresh.poll()
    [outcome] = fresh.poll()
    assert outcome.up_to_date
    assert device.sessions == 1


def _watch(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "sfupdate.cli.main", "client", "watch", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_cli_waits_installs_once_and_times_out(tmp_path: Path, sign_image: SignImage,
                                               device: Device) -> None:
    media, state = tmp_path / "media", tmp_path / "state"
    media.mkdir()
    common = [str(media), "--socket", str(device.agent.socket), "--state-dir", str(state),
              "--interval", "0.1"]
    proc = _watch(*common, "--once", "--max-wait", "60")
    time.sleep(0.5)
    assert proc.poll() is None  # still waiting
    shutil.copy(sign_image(b"firmware v2 " * 500, sequence=2), media / "fw.sfui")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "installed sequence 2 into slot B" in out
    device.assert_trial(2)
    # the same medium again: nothing new, so --max-wait ends it with 124
    started = time.monotonic()
    proc = _watch(*common, "--max-wait", "1")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 124, err
    assert "already handled" in err and "nothing new" in err
    assert time.monotonic() - started < 15


def test_cli_once_reports_a_refusal_with_its_exit_code(tmp_path: Path, sign_image: SignImage,
                                                       device: Device) -> None:
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(sign_image(b"old firmware", sequence=1), media / "old.sfui")
    proc = _watch(str(media), "--socket", str(device.agent.socket), "--state-dir",
                  str(tmp_path / "state"), "--interval", "0.1", "--once", "--max-wait", "30",
                  "--json")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == DowngradeError.exit_code
    assert json.loads(out)["error"]["class"] == "DowngradeError"
    assert [line for line in err.splitlines() if "error" in line] == [
        line for line in err.splitlines() if line.startswith("sfu: error: ")]
    assert err.count("sfu: error: ") == 1
    device.assert_unchanged()


def test_a_medium_mounted_later_is_found(tmp_path: Path, sign_image: SignImage,
                                         device: Device) -> None:
    """The mount point does not exist yet (nothing plugged in): polls find nothing, then the
    medium appears with an image in a subdirectory."""
    media = tmp_path / "media" / "usb0"
    watcher = Watcher(media, device, tmp_path / "state", policy=FAST)
    assert watcher.poll() == [] and watcher.poll() == []
    (media / "firmware").mkdir(parents=True)
    shutil.copy(sign_image(b"firmware v2 " * 500, sequence=2), media / "firmware" / "fw.sfui")
    watcher.poll()
    [outcome] = watcher.poll()
    assert outcome.installed is not None and outcome.kind == "sfui"
    device.assert_trial(2)

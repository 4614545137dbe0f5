"""The DDI client against a real gooseBit server on 127.0.0.1, each device a real sim board and
agent: an assigned update installs and reports success once confirmed; a failing health check
reports failure after the revert; a downgrade the server assigns is refused by the agent and
reported; a download cut mid-way resumes with Range in the same install session.

How the SFUI reaches gooseBit: see goosebit_admin.py (gooseBit's storage and models, since its
upload path parses only SWUpdate and RAUC headers); the server serves it through its own DDI
download endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sfupdate.cli.main import main
from sfupdate.errors import DowngradeError, ServerError, UsageError
from sfupdate.richos.client.ddi import DdiClient, DdiConfig
from sfupdate.secure.kernel.verify import HEALTH_FAIL_MARKER
from tests.conftest import SignImage
from tests.delivery.device import Device
from tests.delivery.goosebit_server import GooseBit
from tests.delivery.netsim import FAST
from tests.delivery.servers import CuttingProxy


@pytest.fixture(scope="module")
def goosebit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GooseBit]:
    server = GooseBit(tmp_path_factory.mktemp("goosebit"))
    yield server
    server.stop()


def ddi(server_url: str, device: Device, state: Path, controller_id: str,
        log: list[str] | None = None) -> DdiClient:
    return DdiClient(DdiConfig(server_url, "DEFAULT", controller_id), device, state, FAST,
                     log=(log.append if log is not None else None))


def registered(goosebit: GooseBit, device: Device, tmp_path: Path, controller_id: str,
               log: list[str] | None = None, server_url: str | None = None) -> DdiClient:
    """A client whose first poll registered the device (gooseBit asks for config data)."""
    client = ddi(server_url or goosebit.url, device, tmp_path / "ddi-state", controller_id, log)
    cycle = client.cycle()
    assert cycle.installed is None and 1 <= cycle.sleep <= 10
    seen = goosebit.device(controller_id)
    assert seen["hardware"]["model"] == device.initial.class_id
    assert seen["sw_version"] == "1" and seen["last_state"] == "Registered"
    return client


def test_an_assigned_update_installs_and_reports_success_after_confirm(
        goosebit: GooseBit, sign_image: SignImage, device: Device, tmp_path: Path) -> None:
    client = registered(goosebit, device, tmp_path, "dev-ok")
    assert client.cycle().message == "no deployment for this device"
    image = sign_image(b"firmware v2 " * 2000, sequence=2)
    goosebit.assign("dev-ok", goosebit.add_software(image, "2", device.initial.class_id))

    cycle = client.cycle()
    assert cycle.installed is not None and cycle.installed.sequence == 2
    device.assert_trial(2)
    seen = goosebit.device("dev-ok")
    assert seen["last_state"] == "Running" and seen["progress"] == 100
    assert "installed sequence 2 into slot B" in goosebit.device_log("dev-ok")

    # polled again before the reboot: the same action is not installed twice
    cycle = client.cycle()
    assert cycle.installed is None and cycle.final is None
    assert device.sessions == 1

    device.update_to(2)  # the trial boots healthy and is confirmed
    cycle = client.cycle()
    assert cycle.final == "success"
    seen = goosebit.device("dev-ok")
    assert seen["last_state"] == "Finished" and seen["sw_version"] == "2"
    assert client.cycle().message == "no deployment for this device"
    assert device.sessions == 1


def test_a_failing_health_check_reports_failure_after_the_revert(
        goosebit: GooseBit, sign_image: SignImage, device: Device, tmp_path: Path) -> None:
    client = registered(goosebit, device, tmp_path, "dev-sick")
    image = sign_image(b"firmware v2 " * 2000 + HEALTH_FAIL_MARKER, sequence=2)
    goosebit.assign("dev-sick", goosebit.add_software(image, "2", device.initial.class_id))
    assert client.cycle().installed is not None
    assert device.reboot().sequence == 1  # the trial failed its health check: slot A again
    cycle = client.cycle()
    assert cycle.final == "failure"
    seen = goosebit.device("dev-sick")
    assert seen["last_state"] == "Error" and seen["sw_version"] == "1"
    assert "trial of sequence 2 in slot B was reverted" in goosebit.device_log("dev-sick")
    # the server holds a device in error back: nothing is offered again
    assert client.cycle().installed is None and device.sessions == 1


def test_a_downgrade_assigned_by_the_server_is_refused_by_the_agent_and_reported(
        goosebit: GooseBit, sign_image: SignImage, device: Device, tmp_path: Path) -> None:
    client = registered(goosebit, device, tmp_path, "dev-old")
    old = sign_image(b"firmware v0 " * 2000, sequence=0, version_text="0.9")
    goosebit.assign("dev-old", goosebit.add_software(old, "0", device.initial.class_id))
    cycle = client.cycle()
    assert isinstance(cycle.error, DowngradeError) and cycle.installed is None
    device.assert_unchanged()
    assert goosebit.device("dev-old")["last_state"] == "Error"
    log = goosebit.device_log("dev-old")
    assert "not installed:" in log and "sequence" in log


def test_a_cut_download_resumes_in_the_same_install_session(
        goosebit: GooseBit, sign_image: SignImage, device: Device, tmp_path: Path) -> None:
    image = sign_image(bytes(range(256)) * 800, sequence=2)
    size = image.stat().st_size
    target = urlsplit(goosebit.url)
    proxy = CuttingProxy((target.hostname or "", target.port or 0), cut_after=size // 2)
    try:
        log: list[str] = []
        client = registered(goosebit, device, tmp_path, "dev-cut", log, proxy.url)
        goosebit.assign("dev-cut", goosebit.add_software(image, "2", device.initial.class_id))
        cycle = client.cycle()
    finally:
        proxy.stop()
    assert proxy.cuts == 1
    assert cycle.installed is not None and cycle.installed.sequence == 2
    assert any("resuming at byte" in line for line in log)
    assert device.sessions == 1
    device.assert_trial(2)


def test_cli_registers_installs_and_reports(goosebit: GooseBit, sign_image: SignImage,
                                            device: Device, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    common = ["client", "ddi", "--server", goosebit.url, "--controller-id", "dev-cli",
              "--socket", str(device.agent.socket), "--state-dir", str(tmp_path / "st"),
              "--attribute", "hw_revision=default", "--once"]
    assert main(common) == 0
    image = sign_image(b"firmware v2 " * 2000, sequence=2)
    goosebit.assign("dev-cli", goosebit.add_software(image, "2", device.initial.class_id))
    assert main([*common, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["installed"]["sequence"] == 2 and result["error"] is None
    assert 1 <= result["next_poll"] <= 10
    device.update_to(2)
    assert main(common) == 0
    assert "reported the trial's result to the server: success" in capsys.readouterr().out
    assert goosebit.device("dev-cli")["sw_version"] == "2"


def test_cli_errors(goosebit: GooseBit, device: Device, tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    base = ["client", "ddi", "--socket", str(device.agent.socket), "--state-dir",
            str(tmp_path / "st"), "--once"]
    assert main([*base, "--server", goosebit.url, "--controller-id", "a/b"]) == \
        UsageError.exit_code
    assert main([*base, "--server", goosebit.url, "--controller-id", "x", "--tenant",
                 "NOPE"]) == ServerError.exit_code
    assert "HTTP 404" in capsys.readouterr().err
    assert main([*base, "--server", "ftp://127.0.0.1/", "--controller-id", "x"]) == \
        UsageError.exit_code
    assert main([*base, "--server", "http://127.0.0.1:1", "--controller-id", "x"]) == \
        ServerError.exit_code
    err = capsys.readouterr().err
    assert "cannot reach the server" in err and err.count("sfu: error:") == 2


@pytest.fixture(scope="module")
def strict_goosebit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GooseBit]:
    """gooseBit with device authentication in strict mode: only devices created by the operator,
    each with its own target token, may poll, fetch or download."""
    server = GooseBit(tmp_path_factory.mktemp("goosebit-strict"),
                      settings={"GOOSEBIT_DEVICE_AUTH__ENABLE": "true",
                                "GOOSEBIT_DEVICE_AUTH__MODE": "strict"})
    yield server
    server.stop()


def test_a_target_token_is_sent_with_every_request(strict_goosebit: GooseBit,
                                                   sign_image: SignImage, device: Device,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    strict_goosebit.create_device("dev-tok", "s3cret-token")
    common = ["client", "ddi", "--server", strict_goosebit.url, "--controller-id", "dev-tok",
              "--socket", str(device.agent.socket), "--state-dir", str(tmp_path / "st"),
              "--once"]
    assert main([*common, "--token", "wrong"]) == ServerError.exit_code
    assert main([*common, "--token", "s3cret-token", "--token-type", "gateway"]) == \
        ServerError.exit_code  # gooseBit accepts target tokens only
    err = capsys.readouterr().err
    assert err.count("refuses this device's credentials (HTTP 401)") == 2
    assert "s3cret" not in err
    client = DdiClient(DdiConfig(strict_goosebit.url, "DEFAULT", "dev-tok", "s3cret-token"),
                       device, tmp_path / "st", FAST)
    client.cycle()  # registration
    image = sign_image(b"firmware v2 " * 2000, sequence=2)
    strict_goosebit.assign("dev-tok", strict_goosebit.add_software(
        image, "2", device.initial.class_id))
    cycle = client.cycle()  # the download endpoint checks the token too
    assert cycle.installed is not None and cycle.installed.sequence == 2
    device.assert_trial(2)

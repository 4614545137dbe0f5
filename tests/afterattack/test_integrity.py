"""Runtime integrity checks through a real agent: the running slot and the agent bundle
re-measured, signed integrity policies (replay-protected), the event log, revert on
mismatch only when it is safe, and periodic checks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sfupdate import errors
from sfupdate.formats.remote import Region
from sfupdate.secure.board.records import EVENT_RING_CAPACITY, SlotStatus
from sfupdate.secure.board.sim import open_board
from tests.afterattack.conftest import Keys
from tests.afterattack.support import (
    boot_record,
    device_target,
    events,
    flip_byte,
    policy,
    refused,
    run,
    serve_agent,
    sha256,
)
from tests.agent.support import RunningAgent
from tests.world import FIRMWARE_V1, FIRMWARE_V2, reboot


def test_an_untouched_device_checks_clean(agent: RunningAgent,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "agent", "check", "--socket", agent.socket, "--json")
    report = json.loads(out)
    assert code == 0 and report["intact"] is True
    assert [r["region"] for r in report["results"]] == ["running-slot", "agent-bundle"]
    assert events(agent.board).total == 0


def test_tampered_running_slot_is_reported_and_logged(agent: RunningAgent,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    flip_byte(agent.board / "slots" / "A.img", 100)
    line = refused(capsys, 16, "agent", "check", "--socket", agent.socket)
    assert "running-slot" in line
    logged = events(agent.board)
    assert logged.total == 1
    assert (logged.events[0].kind, logged.events[0].subject) == ("integrity-mismatch",
                                                                 "running-slot")
    assert "does not match the signed image-digest" in logged.events[0].detail
    code, out, _ = run(capsys, "agent", "audit", "--socket", agent.socket, "--json")
    assert code == 0 and json.loads(out)["events_total"] == 1


def test_tampered_slot_header_is_reported(agent: RunningAgent) -> None:
    flip_byte(agent.board / "slots" / "A.hdr", 60)
    report = agent.client().check()
    assert report.results[0].result == "mismatch"


def test_tampered_agent_bundle_is_reported(agent: RunningAgent) -> None:
    bundle = agent.board / "agent" / "A" / "agent.sfui"
    flip_byte(bundle, bundle.stat().st_size - 100)
    report = agent.client().check()
    by_region = {r.region: r for r in report.results}
    assert by_region["agent-bundle"].result == "mismatch"
    assert by_region["running-slot"].result == "ok"


def test_asking_again_and_again_cannot_flush_the_event_log(agent: RunningAgent,
                                                           anchors: Keys) -> None:
    agent.client().remote(_reboot_command(agent, anchors))  # an event worth keeping
    flip_byte(agent.board / "slots" / "A.img", 100)
    for _ in range(EVENT_RING_CAPACITY + 5):
        assert not agent.client().check().intact
    logged = events(agent.board)
    assert logged.total == 2 and logged.events[0].subject == "reboot"


def test_toggling_a_byte_between_checks_cannot_flush_the_event_log(agent: RunningAgent,
                                                                   anchors: Keys) -> None:
    """The Rich OS flips one byte of the running slot back and forth between checks: every
    check finds a new mismatch (the previous one healed), 100 times over. The operator's
    command and the first tamper stay in the log; the repeats coalesce into one entry."""
    agent.client().remote(_reboot_command(agent, anchors))
    slot = agent.board / "slots" / "A.img"
    for _ in range(100):
        flip_byte(slot, 100)
        assert not agent.client().check().intact
        flip_byte(slot, 100)
        assert agent.client().check().intact
    logged = events(agent.board)
    assert [(e.kind, e.subject) for e in logged.pinned] == [
        ("command", "reboot"), ("integrity-mismatch", "running-slot")]
    (tamper,) = [e for e in logged.events if e.kind == "integrity-mismatch"]
    assert tamper.count == 100 and logged.total == 2


def _reboot_command(agent: RunningAgent, anchors: Keys) -> bytes:
    from tests.afterattack.support import command
    return command(anchors.operator, device_target(agent.board), 1, "reboot")


def test_policy_file_region_is_checked_and_reported(agent: RunningAgent, anchors: Keys,
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "boot.cfg"
    config.write_bytes(b"secure=1\n")
    signed = tmp_path / "policy.cose"
    signed.write_bytes(policy(anchors.operator, device_target(agent.board), 1,
                              Region("boot-config", sha256(b"secure=1\n"), path=str(config))))
    code, out, _ = run(capsys, "agent", "policy", "install", signed, "--socket", agent.socket)
    assert code == 0 and "installed integrity policy 1 (1 region)" in out
    assert agent.client().check().intact
    config.write_bytes(b"secure=0\n")
    report = agent.client().check()
    result = {r.region: r for r in report.results}["policy:boot-config"]
    assert (result.result, result.action) == ("mismatch", "reported")
    config.unlink()
    result = {r.region: r for r in agent.client().check().results}["policy:boot-config"]
    assert result.result == "absent"
    assert [e.kind for e in events(agent.board).events] == [
        "policy-installed", "integrity-mismatch", "integrity-mismatch"]


def test_policy_naming_a_fifo_does_not_hang_the_agent(agent: RunningAgent, anchors: Keys,
                                                      tmp_path: Path) -> None:
    import os
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    agent.client().install_policy(policy(anchors.operator, device_target(agent.board), 1,
                                         Region("fifo", sha256(b""), path=str(fifo))))
    result = agent.client().check().results[-1]
    assert result.result == "mismatch" and "not a regular file" in result.detail


def test_policy_revert_region_reverts_a_running_trial(trial_agent: RunningAgent,
                                                      anchors: Keys) -> None:
    board = trial_agent.board
    head = FIRMWARE_V2[:4096]
    trial_agent.client().install_policy(policy(
        anchors.operator, device_target(board), 1,
        Region("image-head", sha256(head), "revert", slot="running", offset=0, length=4096)))
    assert trial_agent.client().check().intact
    flip_byte(board / "slots" / "B.img", 10)
    result = {r.region: r for r in trial_agent.client().check().results}["policy:image-head"]
    assert (result.result, result.action) == ("mismatch", "reverted")
    record = boot_record(board)
    assert record.trial is None and record.slot(record.confirmed.other).status is SlotStatus.BAD
    assert record.floor == 1
    assert [e.kind for e in events(board).events][-1] == "revert"
    booted = reboot(open_board(board))
    assert (booted.slot, booted.sequence) == ("A", 1)


def test_policy_revert_on_the_confirmed_image_only_reports(agent: RunningAgent,
                                                           anchors: Keys) -> None:
    agent.client().install_policy(policy(
        anchors.operator, device_target(agent.board), 1,
        Region("image-head", sha256(FIRMWARE_V1[:512]), "revert", slot="A", offset=0,
               length=512)))
    flip_byte(agent.board / "slots" / "A.img", 3)
    before = boot_record(agent.board)
    result = {r.region: r for r in agent.client().check().results}["policy:image-head"]
    assert (result.result, result.action) == ("mismatch", "revert-refused")
    assert boot_record(agent.board) == before
    assert events(agent.board).events[-1].kind == "revert-refused"


def test_policy_replay_is_refused(agent: RunningAgent, anchors: Keys) -> None:
    target = device_target(agent.board)
    first = policy(anchors.operator, target, 2, Region("a", sha256(b""), path="/nonexistent"))
    agent.client().install_policy(first)
    before = agent.snapshot()
    for data in (first, policy(anchors.operator, target, 1)):
        with pytest.raises(errors.ReplayError):
            agent.client().install_policy(data)
    assert agent.snapshot() == before


def test_policy_from_a_non_operator_key_or_for_another_device_is_refused(
        agent: RunningAgent, anchors: Keys) -> None:
    from sfupdate.formats.remote import Target
    before = agent.snapshot()
    with pytest.raises(errors.UnknownKeyError):
        agent.client().install_policy(policy(anchors.firmware, device_target(agent.board), 1))
    with pytest.raises(errors.WrongDeviceError):
        agent.client().install_policy(policy(anchors.operator, Target(ueid=b"\x01" * 33), 1))
    assert agent.snapshot() == before


def test_tampered_policy_is_refused(agent: RunningAgent, anchors: Keys) -> None:
    signed = bytearray(policy(anchors.operator, device_target(agent.board), 1,
                              Region("x", sha256(b"x"), path="/etc/hostname")))
    signed[signed.index(b"/etc/hostname")] ^= 0x01
    with pytest.raises(errors.SignatureError):
        agent.client().install_policy(bytes(signed))


def test_periodic_checks_find_tampering_while_the_agent_serves(board_dir: Path,
                                                               socket_dir: Path) -> None:
    with serve_agent(board_dir, socket_dir, "--check-interval", "0.2"):
        flip_byte(board_dir / "slots" / "A.img", 100)
        deadline = time.monotonic() + 10
        while events(board_dir).total == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert events(board_dir).events[0].subject == "running-slot"
    assert "MISMATCH in running-slot" in (socket_dir / "agent.log").read_text()

"""Installs through a real agent process: what is accepted, what is refused, and that a
refusal leaves the device as it was."""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sfupdate.errors import (
    AgentBusyError,
    AuthenticationError,
    DeviceStateError,
    DowngradeError,
    DownloadError,
    PayloadDigestError,
    StorageIntegrityError,
    TooLargeError,
    WrongClassError,
    WrongVendorError,
)
from sfupdate.formats.sfui import class_uuid, vendor_uuid
from sfupdate.keys.files import FileSigner
from tests.agent.support import RunningAgent, file_chunks, install_when_idle, wait_for
from tests.conftest import SignImage
from tests.world import SLOT_SIZE, VENDOR, reboot

FIRMWARE_V2 = b"firmware v2 " * 2000


def install_file(agent: RunningAgent, path: Path) -> object:
    return agent.client().install(file_chunks(path), size=path.stat().st_size)


def test_newer_image_installs_into_the_inactive_slot_as_a_trial(
        agent: RunningAgent, sign_image: SignImage) -> None:
    progress: list[tuple[int, int]] = []
    image = sign_image(payload=FIRMWARE_V2, sequence=2)
    result = agent.client().install(file_chunks(image), size=image.stat().st_size,
                                    progress=lambda done, total: progress.append((done, total)))
    digest = hashlib.sha256(FIRMWARE_V2).hexdigest()
    assert (result.slot, result.sequence, result.digest) == ("B", 2, digest)
    assert progress[-1] == (image.stat().st_size, image.stat().st_size)
    status = agent.client().status()
    assert (status.trial_slot, status.trial_tries_left) == ("B", 3)
    assert (status.slots["B"].state, status.slots["B"].sequence) == ("trial", 2)
    assert status.slots["B"].digest == digest
    assert (status.running_slot, status.running_sequence, status.rollback_floor) == ("A", 1, 1)
    slot_b = (agent.board / "slots" / "B.img").read_bytes()
    assert slot_b[:len(FIRMWARE_V2)] == FIRMWARE_V2


@pytest.mark.parametrize("sequence", [0, 1], ids=["older", "same"])
def test_downgrade_and_replay_of_the_running_sequence_are_refused(
        agent: RunningAgent, sign_image: SignImage, sequence: int) -> None:
    before = agent.snapshot()
    with pytest.raises(DowngradeError, match="not above 1"):
        install_file(agent, sign_image(payload=FIRMWARE_V2, sequence=sequence))
    assert agent.snapshot() == before


def test_old_image_is_refused_after_a_newer_one_is_confirmed(
        agent: RunningAgent, sign_image: SignImage) -> None:
    install_file(agent, sign_image(payload=FIRMWARE_V2, sequence=5))
    reboot(agent.board)
    status = agent.client().confirm()
    assert (status.running_slot, status.running_sequence) == ("B", 5)
    assert status.rollback_floor == 5
    assert status.slots["A"].state == "superseded"
    before = agent.snapshot()
    for sequence in (4, 5):
        with pytest.raises(DowngradeError):
            install_file(agent, sign_image(payload=FIRMWARE_V2, sequence=sequence))
    assert agent.snapshot() == before


def test_image_for_a_foreign_vendor_is_refused(agent: RunningAgent,
                                               sign_image: SignImage) -> None:
    before = agent.snapshot()
    other = vendor_uuid("attacker.example")
    with pytest.raises(WrongVendorError):
        install_file(agent, sign_image(sequence=2, vendor=other,
                                       klass=class_uuid(other, "demo-board")))
    assert agent.snapshot() == before


def test_image_for_a_foreign_class_is_refused(agent: RunningAgent,
                                              sign_image: SignImage) -> None:
    before = agent.snapshot()
    with pytest.raises(WrongClassError):
        install_file(agent, sign_image(sequence=2, klass=class_uuid(VENDOR, "other-board")))
    assert agent.snapshot() == before


def test_image_signed_by_an_unknown_key_is_refused(agent: RunningAgent, sign_image: SignImage,
                                                   eddsa_signer: FileSigner) -> None:
    before = agent.snapshot()
    with pytest.raises(AuthenticationError):
        install_file(agent, sign_image(sequence=2, signer=eddsa_signer))
    assert agent.snapshot() == before


def test_tampered_signature_is_refused_before_a_byte_is_written(
        agent: RunningAgent, sign_image: SignImage) -> None:
    image = sign_image(payload=FIRMWARE_V2, sequence=2)
    data = bytearray(image.read_bytes())
    data[data.index(FIRMWARE_V2) - 200] ^= 0x01  # inside the envelope's signed members
    image.write_bytes(bytes(data))
    before = agent.snapshot()
    with pytest.raises(AuthenticationError):
        install_file(agent, image)
    assert agent.snapshot() == before


def test_tampered_payload_is_refused_and_the_slot_is_left_invalid(
        agent: RunningAgent, sign_image: SignImage) -> None:
    image = sign_image(payload=FIRMWARE_V2, sequence=2)
    data = bytearray(image.read_bytes())
    data[-10] ^= 0xFF  # in the payload: only the digest check at the end can tell
    image.write_bytes(bytes(data))
    before = agent.snapshot()
    with pytest.raises(PayloadDigestError):
        install_file(agent, image)
    after = agent.snapshot()
    assert after["status"]["slots"]["B"] == {"state": "invalid", "sequence": None,
                                             "digest": None}
    assert after["status"]["trial_slot"] is None
    for key in ("running_slot", "running_sequence", "rollback_floor"):
        assert after["status"][key] == before["status"][key]
    assert after["status"]["slots"]["A"] == before["status"]["slots"]["A"]
    for name in ("slots/A.img", "slots/A.hdr"):
        assert after["files"][name] == before["files"][name]
    assert "slots/B.hdr" not in after["files"]  # no header: the boot cannot even try it


def test_image_larger_than_the_slot_is_refused(agent: RunningAgent,
                                               sign_image: SignImage) -> None:
    before = agent.snapshot()
    with pytest.raises(TooLargeError):
        install_file(agent, sign_image(payload=b"\x5a" * (SLOT_SIZE + 1), sequence=2))
    assert agent.snapshot() == before


def test_second_install_while_one_is_streaming_is_busy(agent: RunningAgent,
                                                       sign_image: SignImage) -> None:
    image = sign_image(payload=FIRMWARE_V2, sequence=2)
    data = image.read_bytes()
    halfway, release = threading.Event(), threading.Event()
    outcome: list[object] = []

    def slow_chunks() -> Iterator[bytes]:
        yield data[:len(data) // 2]
        halfway.set()
        release.wait(10)
        yield data[len(data) // 2:]

    def first() -> None:
        try:
            outcome.append(agent.client().install(slow_chunks(), size=len(data)))
        except Exception as exc:  # reported through `outcome`
            outcome.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert halfway.wait(10)
        with pytest.raises(AgentBusyError):
            install_file(agent, sign_image(payload=FIRMWARE_V2, sequence=3))
        with pytest.raises(AgentBusyError):
            agent.client().confirm()
        assert agent.client().status().running_sequence == 1  # status still answers
    finally:
        release.set()
        thread.join(20)
    assert getattr(outcome[0], "sequence", None) == 2, outcome


def test_failing_chunk_source_aborts_the_install_and_propagates(
        agent: RunningAgent, sign_image: SignImage) -> None:
    data = sign_image(payload=FIRMWARE_V2, sequence=2).read_bytes()
    before = agent.snapshot()

    def broken() -> Iterator[bytes]:
        yield data[:len(data) - 5000]
        raise DownloadError("server went away")

    with pytest.raises(DownloadError, match="server went away"):
        agent.client().install(broken(), size=len(data))
    # The agent notices the closed connection on its own thread: give it a moment.
    after = wait_for(agent, lambda status: status.slots["B"].state == "invalid")
    assert after.slots["A"].to_json() == before["status"]["slots"]["A"]
    assert after.trial_slot is None and after.rollback_floor == 1
    result = install_when_idle(agent, sign_image(payload=FIRMWARE_V2, sequence=2))
    assert result.sequence == 2  # the next honest install works


def test_reject_trial_marks_the_slot_bad_and_keeps_the_confirmed_one(
        agent: RunningAgent, sign_image: SignImage) -> None:
    install_file(agent, sign_image(payload=FIRMWARE_V2, sequence=2))
    status = agent.client().reject_trial()
    assert status.trial_slot is None
    assert status.slots["B"].state == "bad"
    assert (status.slots["A"].state, status.rollback_floor) == ("confirmed", 1)


def test_confirm_without_a_trial_is_refused(agent: RunningAgent) -> None:
    before = agent.snapshot()
    with pytest.raises(DeviceStateError):
        agent.client().confirm()
    with pytest.raises(DeviceStateError):
        agent.client().reject_trial()
    assert agent.snapshot() == before


def test_confirm_before_the_trial_has_booted_is_refused(agent: RunningAgent,
                                                        sign_image: SignImage) -> None:
    install_file(agent, sign_image(payload=FIRMWARE_V2, sequence=2))
    with pytest.raises(DeviceStateError, match="booted"):
        agent.client().confirm()
    assert agent.client().status().rollback_floor == 1


def test_rolled_back_secure_storage_is_refused(agent: RunningAgent, sign_image: SignImage,
                                               tmp_path: Path) -> None:
    saved = tmp_path / "secure-copy"
    shutil.copytree(agent.board / "secure", saved)
    install_file(agent, sign_image(payload=FIRMWARE_V2, sequence=2))
    shutil.rmtree(agent.board / "secure")
    shutil.copytree(saved, agent.board / "secure")  # the attacker puts the old copy back
    with pytest.raises(StorageIntegrityError):
        agent.client().status()
    with pytest.raises(StorageIntegrityError):
        install_file(agent, sign_image(payload=FIRMWARE_V2, sequence=3))

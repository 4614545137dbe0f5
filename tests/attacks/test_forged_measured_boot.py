"""Attack: the measured-boot log used to be a JSON file beside the board (writable by the Rich
OS), and attestation signed whatever it held. It is now kept in secure storage by the boot
code through the kernel: attestation reports exactly the chain the boot measured, and a file
planted where the log used to be changes nothing."""

from __future__ import annotations

import hashlib
import io
import json

from sfupdate.formats.remote import verify_token
from sfupdate.formats.sfui import EnvelopeReader, TrustedKey, manifest_digest
from sfupdate.secure.board.hal import Slot
from sfupdate.secure.kernel import Kernel
from sfupdate.secure.kernel.verify import verify_agent_bundle
from tests.device_world import DeviceWorld

NONCE = b"n" * 16


def _attested(world: DeviceWorld) -> list[bytes]:
    token = world.client().attest(NONCE)
    key = TrustedKey(Kernel(world.board().storage).identity_key().public_key())
    return list(verify_token(token, key, NONCE).boot_log)


def test_attestation_reports_what_the_boot_code_measured(world: DeviceWorld) -> None:
    world.boot()
    board = world.board()
    agent = Kernel(board.storage).state().agent
    agent_digest, chunks = verify_agent_bundle(board, agent.active, agent.active_bundle)
    for _ in chunks:
        pass
    header = board.slots.header(Slot.A)
    assert header is not None
    reader = EnvelopeReader(io.BytesIO(header))
    image = world.record().confirmed_image
    expected = [agent_digest, manifest_digest(reader.manifest_bytes), image.digest]
    assert _attested(world) == expected
    pcr = bytes(32)
    for digest in expected:
        pcr = hashlib.sha256(pcr + digest).digest()
    assert Kernel(board.storage).state().measured.pcr == pcr


def test_a_planted_boot_log_file_changes_nothing(world: DeviceWorld) -> None:
    world.boot()
    genuine = _attested(world)
    (world.root / "boot-log.json").write_text(json.dumps(
        {"pcr": "00" * 32, "events": [{"stage": "agent", "digest": "ab" * 32}]}))
    assert _attested(world) == genuine

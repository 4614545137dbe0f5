"""The attack suite's world: a provisioned sim board with the real agent process serving it on a
real Unix socket (stopped, and checked to have survived, after every test)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sfupdate import keys
from sfupdate.keys.files import FileSigner
from tests.device_world import DeviceWorld


@pytest.fixture(scope="session")
def attacker_key() -> FileSigner:
    """A well-formed ES256 key the device has never heard of."""
    return FileSigner(keys.generate_private_key("ES256"))


@pytest.fixture
def world(tmp_path: Path, es256_signer: FileSigner) -> Iterator[DeviceWorld]:
    sockets = Path(tempfile.mkdtemp(prefix="sfu-"))  # sun_path is short; tmp_path may not be
    device = DeviceWorld.provisioned(tmp_path, sockets, es256_signer)
    device.start_agent()
    try:
        yield device
        if device.agent is not None:  # a test may stop it on purpose
            device.agent.assert_alive()
    finally:
        device.stop_agent()
        shutil.rmtree(sockets, ignore_errors=True)

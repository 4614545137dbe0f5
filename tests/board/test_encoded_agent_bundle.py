"""An agent bundle is never compressed nor a delta: the ROM reads its partition as the
envelope it was, so the agent refuses such a bundle before it writes anything."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
import zstandard

from sfupdate.authoring.author import ImageSpec, build_manifest
from sfupdate.errors import UnsupportedError
from sfupdate.formats.sfui.encoding import Compressed
from sfupdate.formats.sfui.uuids import AGENT_CLASS, AGENT_VENDOR
from sfupdate.keys.files import FileSigner
from sfupdate.secure.agent.device import Device
from sfupdate.secure.agent.install import install
from sfupdate.secure.kernel import Kernel
from tests.device_world import envelope
from tests.world import fresh


def test_a_compressed_agent_bundle_is_refused_before_anything_is_written(
        board_dir: Path, agent_signer: FileSigner) -> None:
    zipapp = b"PK\x03\x04 a zipapp that would run as the agent " * 100
    manifest = build_manifest(ImageSpec(2, AGENT_VENDOR, AGENT_CLASS),
                              hashlib.sha256(zipapp).digest(), len(zipapp), None,
                              encoding=Compressed()).encode()
    data = envelope(manifest, zstandard.ZstdCompressor().compress(zipapp), agent_signer)
    before = Kernel(fresh(board_dir).storage).state()
    partitions = {p: p.read_bytes() for p in (board_dir / "agent").rglob("*") if p.is_file()}
    with pytest.raises(UnsupportedError, match="agent bundle's payload is never compressed"):
        install(Device(fresh(board_dir)), io.BytesIO(data))
    assert Kernel(fresh(board_dir).storage).state() == before
    assert {p: p.read_bytes() for p in partitions} == partitions

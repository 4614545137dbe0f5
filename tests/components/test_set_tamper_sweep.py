"""Tamper sweep of a two-component SFUI, through the real agent process: every byte that is
not payload (the envelope prefix, and the head between the two payloads) flipped twice
(lowest and highest bit), and each payload every 4 KiB once. Every copy is refused; the
device's state apart from the bytes of side B (which stays invalid) is unchanged after each
one, so no copy ever records either component; a copy flipped before the first payload is
refused before side B is touched. The genuine set then installs."""

from __future__ import annotations

import collections
import hashlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sfupdate.errors import PayloadTooShortError, SfuError
from sfupdate.keys.files import FileSigner
from tests.components.conftest import CopyBoard, SignSet, app_image, boot_image
from tests.device_world import DeviceWorld, flip

STRIDE = 4096


def side_b(files: dict[str, str]) -> dict[str, str]:
    return {name: digest for name, digest in files.items()
            if Path(name).parts[0] == "slots" and Path(name).name.startswith("B.")}


def state(world: DeviceWorld) -> dict[str, object]:
    snap = world.snapshot()
    files = snap["files"]
    snap["files"] = {k: v for k, v in files.items() if k not in side_b(files)}
    return snap


@pytest.fixture
def set_world(set_board: CopyBoard, es256_signer: FileSigner) -> Iterator[DeviceWorld]:
    sockets = Path(tempfile.mkdtemp(prefix="sfu-"))
    world = DeviceWorld(set_board(), sockets, es256_signer)
    world.start_agent()
    try:
        yield world
        world.running.assert_alive()
    finally:
        world.stop_agent()
        shutil.rmtree(sockets, ignore_errors=True)


def test_every_flipped_copy_of_a_set_is_refused_and_records_nothing(
        set_world: DeviceWorld, sign_set: SignSet, capsys: pytest.CaptureFixture[str]) -> None:
    world = set_world
    payloads = {"app": app_image(2), "boot": boot_image(2)}  # "#app" < "#boot": envelope order
    image = sign_set(2, boot=payloads["boot"], app=payloads["app"]).read_bytes()
    second = len(image) - len(payloads["boot"])
    first = image.index(payloads["app"])
    assert first + len(payloads["app"]) < second and image[second:] == payloads["boot"]
    with pytest.raises(PayloadTooShortError):  # an install cut short: side B is invalid
        world.install(image[:-1], chunk=len(image))
    before = state(world)
    assert before["status"]["slots"]["B"]["state"] == "invalid"  # type: ignore[index]
    untouched = side_b(world.snapshot()["files"])

    heads = [*range(first), *range(first + len(payloads["app"]), second)]
    copies = [(offset, mask) for offset in heads for mask in (0x01, 0x80)]
    copies += [(offset, 0x01) for start, size in ((first, len(payloads["app"])),
                                                 (second, len(payloads["boot"])))
               for offset in range(start, start + size, STRIDE)]
    refusals: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    for offset, mask in copies:
        with pytest.raises(SfuError) as refused:
            world.install(flip(image, offset, mask), chunk=len(image))
        refusals[type(refused.value).__name__] += 1
        assert state(world) == before, f"state changed by the copy flipped at {offset}"
        if offset < first:
            assert side_b(world.snapshot()["files"]) == untouched, offset
    elapsed = time.monotonic() - started

    assert world.install(image, chunk=len(image)).sequence == 2  # the genuine set installs
    assert world.boot().sequence == 2
    digest = hashlib.sha256(image).hexdigest()[:16]
    with capsys.disabled():
        print(f"\n[tamper-sweep] two-component SFUI {digest}: {len(copies)} flipped copies "
              f"({len(heads)} non-payload bytes x 2 bits, the payloads every {STRIDE} bytes) "
              f"through the agent in {elapsed:.1f} s, all refused: {dict(refusals)}")

"""A delta install cut at EVERY write: the base (running, confirmed) slot is only read, so
whatever the cut, the device boots v1 untouched or, once the trial was recorded, the rebuilt
v2; the rollback floor never goes down (the invariants of test_power_cut)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sfupdate.authoring.author import ImageSpec
from sfupdate.authoring.author.encoded import sign_delta
from sfupdate.keys.files import FileSigner
from sfupdate.secure.agent.device import Device
from sfupdate.secure.agent.install import install
from sfupdate.secure.board.power import PowerCut
from sfupdate.secure.board.sim import SimBoard
from tests.board.conftest import CopyBoard, Images
from tests.board.test_power_cut import check_invariants
from tests.world import CLASS, VENDOR, fresh, reboot


@pytest.fixture(scope="module")
def delta_v2(tmp_path_factory: pytest.TempPathFactory, images: Images,
             es256_signer: FileSigner) -> Path:
    root = tmp_path_factory.mktemp("delta")
    (root / "v2.bin").write_bytes(b"firmware one " * 150 + b"a new part " * 80
                                  + b"firmware one " * 150)
    sign_delta(root / "v2.bin", images.v1, root / "v2-delta.sfui", es256_signer,
               ImageSpec(2, VENDOR, CLASS))
    return root / "v2-delta.sfui"


def slot_a(path: Path) -> str:
    return hashlib.sha256((path / "slots" / "A.img").read_bytes()).hexdigest()


def test_power_cut_at_every_write_of_a_delta_install_never_touches_the_running_image(
        fresh_board: CopyBoard, delta_v2: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def cycle(board: SimBoard) -> None:
        with open(delta_v2, "rb") as f:
            install(Device(board), f)
        assert reboot(board).slot == "B"

    probe = fresh(fresh_board())
    cycle(probe)
    total = probe.power.ops
    for cut in range(1, total + 1):
        path = fresh_board()
        before = slot_a(path)
        board = fresh(path, cut_at=cut)
        with pytest.raises(PowerCut):
            cycle(board)
        assert slot_a(path) == before  # the base slot was only read
        check_invariants(path, 1, {1})
    with capsys.disabled():
        print(f"\n[power-cut] delta install: cut power at each of {total} write points; the "
              "base slot was never written and every reboot booted an authentic image")
    assert total > 5

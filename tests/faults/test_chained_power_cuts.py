"""Chained power cuts: up to three cuts at random points of an update's life — install, boot,
confirm, reject, revert — and of the recovery itself (a cut during the reboot that follows a
cut), after MCUboot's simulator. tests/board/test_power_cut.py cuts once at EVERY write of
three update cycles; this goes further in depth, at random.

One run: copy a provisioned board (v1 confirmed in slot A, or later in life: v2 confirmed in
slot B), pick a scenario, and play it with power cuts armed at random write indices. After a
cut the device reboots (the reboot may be cut again, while cuts are left), then the
interrupted step is retried as the device would (the client re-sends an install, the health
check re-confirms; an interrupted boot is replaced by the recovery boot). Refusals (a confirm
with no booted trial, an install below the now-running image) are normal outcomes.

Checked at every cut, after every boot and at the end of each run:
  1. an authentic slot boots (the reboot verifies the slot it picks against its signed
     header and boot control; the final reboot, with no cut, must succeed);
  2. the rollback floor never drops;
  3. a confirmed image is never lost (the confirmed sequence never goes back, and the
     confirmed slot's bytes verify against their signed digest at every point).

`SFU_FAULT_RUNS` (default 300) and `SFU_FAULT_SEED` (default fixed) scale and vary it:
`SFU_FAULT_RUNS=5000 pytest tests/faults`. A failing run names its seed and index.
"""

from __future__ import annotations

import collections
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sfupdate.authoring.author import ImageSpec, sign_firmware
from sfupdate.errors import SfuError
from sfupdate.formats.sfui import TrustedKey
from sfupdate.keys.files import FileSigner
from sfupdate.secure.agent.device import Device
from sfupdate.secure.agent.install import install
from sfupdate.secure.board.power import PowerCut
from sfupdate.secure.board.sim import SimBoard
from sfupdate.secure.boot.stage2 import BootResult
from sfupdate.secure.kernel import Kernel
from sfupdate.secure.kernel.verify import HEALTH_FAIL_MARKER, verify_slot
from tests.world import CLASS, SMALL_SLOT_SIZE, VENDOR, fresh, provision_board, reboot

RUNS = int(os.environ.get("SFU_FAULT_RUNS", "300"))
SEED = int(os.environ.get("SFU_FAULT_SEED", "20240517"))
MAX_CUTS = 3


# --- the world: images and two provisioned boards ---------------------------------------------


@dataclass(frozen=True)
class Images:
    good: dict[int, Path]  # sequence -> a healthy image
    failing: dict[int, Path]  # sequence -> an image whose health check fails


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, es256_signer: FileSigner) -> Images:
    root = tmp_path_factory.mktemp("chain-images")

    def sign(name: str, payload: bytes, sequence: int) -> Path:
        (root / f"{name}.bin").write_bytes(payload)
        sign_firmware(root / f"{name}.bin", root / f"{name}.sfui", es256_signer,
                      ImageSpec(sequence, VENDOR, CLASS, f"{sequence}.0"))
        return root / f"{name}.sfui"

    good = {n: sign(f"good{n}", f"firmware {n} ".encode() * (300 + 50 * n), n)
            for n in range(1, 6)}
    failing = {n: sign(f"fail{n}", f"firmware {n} ".encode() * 200 + HEALTH_FAIL_MARKER, n)
               for n in range(2, 6)}
    return Images(good, failing)


def install_file(board: SimBoard, image: Path) -> None:
    with open(image, "rb") as f:
        install(Device(board), f)


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory, images: Images,
              es256_trusted: TrustedKey) -> list[Path]:
    """Two points in a device's life: v1 confirmed in A; v2 confirmed in B (A superseded)."""
    root = tmp_path_factory.mktemp("chain-templates")
    first = root / "first"
    provision_board(first, images.good[1], [es256_trusted], slot_size=SMALL_SLOT_SIZE)
    later = root / "later"
    shutil.copytree(first, later)
    board = fresh(later)
    install_file(board, images.good[2])
    reboot(board)
    Kernel(board.storage).confirm()
    return [first, later]


# --- scenarios --------------------------------------------------------------------------------

Step = tuple[str, Callable[[SimBoard], object]]


def scenarios(images: Images, base: int) -> dict[str, list[Step]]:
    """What a device goes through, from a board whose confirmed image has sequence `base`."""
    nxt, after = images.good[base + 1], images.good[base + 2]
    failing = images.failing[base + 1]

    def installing(image: Path) -> Step:
        return "install", lambda board: install_file(board, image)

    booting: Step = ("boot", reboot)
    confirming: Step = ("confirm", lambda board: Kernel(board.storage).confirm())
    rejecting: Step = ("reject", lambda board: Kernel(board.storage).reject_trial())
    return {
        "update": [installing(nxt), booting, confirming, booting],
        "revert": [installing(failing), booting, booting],
        "exhausted-tries": [installing(nxt), booting, booting, booting, booting, booting],
        "reject": [installing(nxt), rejecting, booting],
        "reinstall-over-trial": [installing(nxt), installing(after), booting, confirming,
                                 booting],
        "update-twice": [installing(nxt), booting, confirming, installing(after), booting,
                         confirming, booting],
    }


# --- invariants -------------------------------------------------------------------------------


@dataclass
class Watch:
    """What has been seen so far of one board: the floor and the confirmed image only ever
    move up."""

    path: Path
    floor: int = 0
    confirmed: int = 0

    def check(self, where: str) -> None:
        board = fresh(self.path)  # reading changes nothing
        state = Kernel(board.storage).state()
        record = state.boot
        assert record.floor >= self.floor, f"{where}: floor dropped {self.floor} -> {record.floor}"
        image = record.confirmed_image
        assert image.sequence >= self.confirmed, \
            f"{where}: confirmed image lost ({self.confirmed} -> {image.sequence})"
        assert record.floor == image.sequence, f"{where}: floor and confirmed image disagree"
        verify_slot(board, record.confirmed, image, state.signer_keys(image), state.device,
                    record.floor)  # raises
        self.floor, self.confirmed = record.floor, image.sequence

    def booted(self, result: BootResult, where: str) -> None:
        assert result.sequence >= self.floor, f"{where}: booted {result.sequence} below floor"
        self.check(where)


@dataclass
class Tally:
    runs: int = 0
    cuts: collections.Counter[str] = field(default_factory=collections.Counter)
    scenarios: collections.Counter[str] = field(default_factory=collections.Counter)
    points: set[tuple[str, int, str, int]] = field(default_factory=set)


# --- one run ------------------------------------------------------------------------------------


def one_run(rng: random.Random, path: Path, steps: list[Step], name: str, ops: int,
            boot_ops: int, tally: Tally) -> None:
    watch = Watch(path)
    watch.check("start")
    cuts_left = rng.randint(1, MAX_CUTS)

    def arm(recovering: bool) -> int | None:
        nonlocal cuts_left
        if not cuts_left:
            return None
        cuts_left -= 1
        # Half the time aim at the recovery boot itself, else anywhere in what is left.
        return rng.randint(1, boot_ops if recovering and rng.random() < 0.5 else ops)

    board = fresh(path, arm(False))
    pending = list(steps)
    while pending:
        label, step = pending[0]
        try:
            outcome = step(board)
        except PowerCut:
            tally.cuts[label] += 1
            tally.scenarios[name.split("@")[0]] += 1
            tally.points.add((name, steps.index(pending[0]), label, board.power.ops))
            watch.check(f"cut in {label}")
            while True:  # recovery: reboot, perhaps cut again
                board = fresh(path, arm(True))
                try:
                    watch.booted(reboot(board), "recovery boot")
                    break
                except PowerCut:
                    tally.cuts["recovery"] += 1
                    tally.points.add((name, -1, "recovery", board.power.ops))
                    watch.check("cut in recovery")
            if label == "boot":
                pending.pop(0)  # the recovery boot was that boot
            continue
        except SfuError:
            outcome = None  # a refusal is a legitimate outcome for a retried step
        pending.pop(0)
        if label == "boot" and isinstance(outcome, BootResult):
            watch.booted(outcome, "boot")
        else:
            watch.check(f"after {label}")
    final = fresh(path)
    watch.booted(reboot(final), "final boot")
    tally.runs += 1


def test_chained_power_cuts_never_brick_downgrade_or_lose_the_confirmed_image(
        templates: list[Path], images: Images, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The writes each scenario makes without a cut, and those of one boot: the ranges cuts
    # are drawn from.
    plans = []
    for template in templates:
        base = Kernel(fresh(template).storage).state().boot.confirmed_image.sequence
        for name, steps in scenarios(images, base).items():
            probe = tmp_path / "probe"
            shutil.copytree(template, probe)
            board = fresh(probe)
            for _, step in steps:
                step(board)
            ops = board.power.ops
            shutil.rmtree(probe)
            plans.append((template, f"{name}@{base}", steps, ops))
    shutil.copytree(templates[0], tmp_path / "probe")
    board = fresh(tmp_path / "probe")
    reboot(board)
    boot_ops = board.power.ops

    tally = Tally()
    started = time.monotonic()
    for index in range(RUNS):
        rng = random.Random(f"{SEED}-{index}")
        template, name, steps, ops = rng.choice(plans)
        path = tmp_path / "run"
        shutil.rmtree(path, ignore_errors=True)
        shutil.copytree(template, path)
        try:
            one_run(rng, path, steps, name, ops, boot_ops, tally)
        except (AssertionError, SfuError) as exc:  # a brick is an SfuError from the reboot
            raise AssertionError(f"run {index} ({name}) with SFU_FAULT_SEED={SEED}: "
                                 f"{type(exc).__name__}: {exc}") from exc
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(f"\n[chained-faults] seed {SEED}: {tally.runs} runs, {sum(tally.cuts.values())} "
              f"power cuts at {len(tally.points)} distinct cut points, in {elapsed:.1f} s; "
              f"cut during {dict(tally.cuts)}; cuts in steps per scenario {dict(tally.scenarios)}; "
              "the three invariants held at every cut, boot and end")
    assert tally.runs == RUNS
    for where in ("install", "boot", "confirm", "reject", "recovery"):
        assert tally.cuts[where] > 0 or RUNS < 100, f"no cut ever hit {where}"

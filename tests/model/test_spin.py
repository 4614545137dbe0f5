"""spin verifies model/kernel.pml exhaustively (docs/model.md): every property holds in the
model of the real kernel, each deliberately broken variant violates its property, and the
search reaches every interesting transition (so no property holds vacuously).

Properties: (a) every boot runs an authentic image at or above the floor; (b) the floor never
decreases; (c) the confirmed image booted and passed its health check; (d) the confirmed
slot stays bootable (its signer an active anchor, at or above the floor), and a boot halts
only when the Rich OS altered its bytes; (e) a refused request changes no state; (f) an
accepted remote command number is never accepted again; INV: every state the kernel writes
passes its own check() and check_successor().

SFU_MODEL_EACH=1 also verifies each property on its own (for its state-space figures).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.model import spin

PROPERTIES = spin.ALL_PROPERTIES
#: broken variant -> (its property, a piece of the assertion spin must report violated)
BROKEN = {
    "BROKEN_VERIFY": ("PROP_A", "(con[s]!=0)"),
    "BROKEN_FLOOR": ("PROP_B", "(floor>=pfloor)"),
    "BROKEN_CONFIRM": ("PROP_C", "gh[conf]"),
    "BROKEN_REVOKE": ("PROP_D", "(rec[conf]/8)>=floor"),
    "BROKEN_SLOT": ("PROP_D", "(rec[conf]/8)>=floor"),
    "BROKEN_REFUSAL": ("PROP_E", "(o_st0==st[0])"),
    "BROKEN_REPLAY": ("PROP_F", "((acc>>a3)&1)"),
    "BROKEN_SPLIT": ("PROP_F", "((acc>>a3)&1)"),
}
#: model/ops.pml REACHED(n): install recorded, slot write torn, trial healthy, trial fails
#: verification, trial out of tries, recovery image confirmed under quarantine, halt, revert,
#: revoke rejecting the trial, no room in the event log, spent command refused, floor at NV
WITNESSES = set(range(1, 13))


@pytest.fixture(autouse=True)
def _spin() -> None:
    spin.require_spin()


def test_the_model_of_the_kernel_has_every_property(tmp_path: Path) -> None:
    result = spin.verify(PROPERTIES, tmp_path)
    print(f"\n[spin] {result.figures()}")
    assert result.errors == 0, result.output
    assert result.states > 100_000, "suspiciously small state space"


@pytest.mark.skipif(not os.environ.get("SFU_MODEL_EACH"), reason="SFU_MODEL_EACH=1 runs it")
@pytest.mark.parametrize("prop", PROPERTIES)
def test_each_property_on_its_own(prop: str, tmp_path: Path) -> None:
    result = spin.verify((prop,), tmp_path)
    print(f"\n[spin] {result.figures()}")
    assert result.errors == 0, result.output


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_broken_model_violates_its_property(broken: str, tmp_path: Path) -> None:
    prop, violated = BROKEN[broken]
    result = spin.verify((prop, broken), tmp_path, optimise=False)
    print(f"\n[spin] {result.figures()}: {result.violated}")
    assert result.errors >= 1, f"spin found no error in the {broken} variant"
    assert violated in result.violated, result.output


def test_the_search_reaches_every_interesting_transition(tmp_path: Path) -> None:
    result = spin.verify(("COVER",), tmp_path, ("-c0",))
    reached = {int(n) for n in re.findall(r"assertion violated +!\((\d+)\)", result.output)}
    missing = set(WITNESSES) - reached
    assert not missing, f"REACHED({sorted(missing)}) in model/ops.pml never reached"

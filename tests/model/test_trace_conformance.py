"""Trace conformance between model/kernel.pml and the real kernel (docs/model.md).

Both ways, at least SFU_TRACE_STEPS steps each (default 5,000), in walks of WALK_OPS
operations from a freshly provisioned board:

* the model chooses: spin's simulator takes a random walk of the model (`spin -DWALK -n SEED`)
  and prints each operation and the abstract state after it; the code runs the same
  operations on a sim board (the agent's install, stage 2's boot_firmware, the Kernel's
  confirm, reject and execute, writes to slot storage, power cut at the same event) and must
  reach the same abstract state, with the same result, after every one;
* the code chooses: random operations run on the code first, then spin replays exactly those
  in a generated trace driver, and must reach the states the code reached.

An equal state after every step means every transition the code made is one the model
allows with the same arguments (the model is deterministic given them). Along the way the
code itself must change nothing on a refusal and never accept a command number twice.
"""

from __future__ import annotations

import collections
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.model import spin
from tests.model.conformance import Coverage, Mismatch, code_walk, compare, first_difference
from tests.model.world import (
    CUT,
    HALT,
    OK,
    OP_BOOT,
    OP_COMMAND,
    OP_CONFIRM,
    OP_INSTALL,
    OP_REJECT,
    OP_TAMPER,
    REFUSED,
    World,
)

STEPS = int(os.environ.get("SFU_TRACE_STEPS", "5000"))
WALK_OPS = 30
#: every (operation, result) both directions must have seen: the walks reach everything
MUST_COVER = {(OP_INSTALL, OK), (OP_INSTALL, REFUSED), (OP_INSTALL, CUT), (OP_BOOT, OK),
              (OP_BOOT, CUT), (OP_BOOT, HALT), (OP_CONFIRM, OK), (OP_CONFIRM, REFUSED),
              (OP_CONFIRM, CUT), (OP_REJECT, OK), (OP_REJECT, REFUSED), (OP_COMMAND, OK),
              (OP_COMMAND, REFUSED), (OP_COMMAND, CUT), (OP_TAMPER, OK)}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    spin.require_spin()
    yield World(tmp_path_factory.mktemp("model-world"))


def _report(direction: str, walks: int, coverage: Coverage) -> None:
    steps = sum(coverage.values())
    missing = MUST_COVER - set(coverage)
    if steps >= 5000:  # fewer (SFU_TRACE_STEPS for a quick look) need not cover everything
        assert not missing, f"{direction}: the walks never reached {sorted(missing)}"
    print(f"\n[trace conformance] {direction}: {steps} steps in {walks} walks, every state "
          f"equal; (operation, result) counts {dict(sorted(coverage.items()))}")


def test_the_code_follows_the_models_random_walks(world: World) -> None:
    coverage: Coverage = collections.Counter()
    seed = 0
    while sum(coverage.values()) < STEPS:
        seed += 1
        steps = spin.walk(seed, WALK_OPS)
        board = world.fresh()
        try:
            compare(board, [op for op, _ in steps], [st for _, st in steps], coverage)
        except Mismatch as exc:
            raise AssertionError(f"spin walk -n{seed}: the code left the model at {exc}") \
                from None
        finally:
            board.close()
    _report("model -> code", seed, coverage)


def test_the_model_allows_every_step_the_code_takes(world: World) -> None:
    coverage: Coverage = collections.Counter()
    rng = random.Random(int(os.environ.get("SFU_TRACE_SEED", "17")))
    walks = 0
    while sum(coverage.values()) < STEPS:
        walks += 1
        board = world.fresh()
        try:
            ops, states = code_walk(board, rng, WALK_OPS, coverage)
        finally:
            board.close()
        difference = first_difference(ops, states, spin.replay)
        assert difference is None, f"walk {walks}: the model disagrees at {difference}"
    _report("code -> model", walks, coverage)


def test_a_model_that_differs_from_the_code_is_caught(world: World, tmp_path: Path) -> None:
    """Not a test that cannot fail: a model with 2 tries per trial (the code gives 3) must
    part from the code within a few walks, both ways."""
    for seed in range(1, 40):
        steps = spin.walk(seed, WALK_OPS, ("TRIES=2",))
        board = world.fresh()
        try:
            compare(board, [op for op, _ in steps], [st for _, st in steps],
                    collections.Counter())
        except Mismatch:
            break
        finally:
            board.close()
    else:
        raise AssertionError("no walk of a model with 2 tries per trial differed from the code")
    rng = random.Random(5)
    for _ in range(40):
        board = world.fresh()
        try:
            ops, states = code_walk(board, rng, WALK_OPS, collections.Counter())
        finally:
            board.close()
        if first_difference(ops, states, lambda o: spin.replay(o, ("TRIES=2",))):
            break
    else:
        raise AssertionError("the replay of 40 code walks never differed with 2 tries")

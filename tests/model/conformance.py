"""Replaying model operations on the real code and comparing, step by step, the abstract
state the code reaches with the one the model reaches, plus two properties checked on the
code itself: a refused request changes nothing (e), an accepted command number is never
accepted again (f)."""

from __future__ import annotations

import collections
import random
from collections.abc import Callable, Sequence

from sfupdate.secure.kernel import SecureState
from tests.model.spin import TRACE_NV as NV
from tests.model.spin import Op, State
from tests.model.world import (
    A_ACK,
    FIRST,
    IMAGES,
    NONE,
    OP_BOOT,
    OP_COMMAND,
    OP_CONFIRM,
    OP_INSTALL,
    OP_REJECT,
    OP_TAMPER,
    REC,
    REFUSED,
    ModelBoard,
    X,
    img,
)

#: what the walks covered: (operation, result) -> count
Coverage = collections.Counter[tuple[int, int]]


class Mismatch(AssertionError):
    pass


def step(board: ModelBoard, op: Op, before: SecureState,
         accepted: set[int]) -> tuple[State, SecureState]:
    """Run one operation on the code (whose secure state is `before`); the model's "ST"
    line for what the code did, and the secure state after it."""
    result = board.run(*op)
    after = board.state()
    if result == REFUSED:  # (e)
        spent = after.remote.last_command != before.remote.last_command
        if not spent:
            assert after == before, f"{op} was refused but changed the secure state"
        else:
            assert op[0] == OP_COMMAND and (after.boot, after.trust, after.remote.quarantine) \
                == (before.boot, before.trust, before.remote.quarantine), \
                f"{op}: a command whose action was refused did more than spend its number"
    if after.remote.last_command != before.remote.last_command:  # (f)
        number = after.remote.last_command
        assert number not in accepted, f"command number {number} was accepted twice"
        accepted.add(number)
    return (op[0], result, *board.abstract(after)), after


def compare(board: ModelBoard, ops: Sequence[Op], model: Sequence[State],
            coverage: Coverage) -> None:
    """Replay `ops` on `board`; after each, the code's state must be the model's."""
    accepted: set[int] = set()
    secure = board.state()
    for i, (op, expected) in enumerate(zip(ops, model, strict=True)):
        got, secure = step(board, op, secure, accepted)
        coverage[(got[0], got[1])] += 1
        if got != expected:
            raise Mismatch(f"step {i}, operation {op}:\n  model {expected}\n  code  {got}\n"
                           f"operations so far: {list(ops[:i + 1])}")


def _cut(rng: random.Random, events: int) -> int:
    return 0 if rng.random() < 0.7 else rng.randint(1, 2 * events)


def random_op(rng: random.Random, state: tuple[int, ...]) -> Op:
    """An operation for the code to run next, chosen with the abstract `state` (as
    ModelBoard.abstract() gives it) in view so that walks go somewhere."""
    rec = state[2:4]
    conf, floor, booted, th, quar, last = (state[i] for i in (6, 9, 10, 11, 13, 14))
    roll = rng.random()
    if roll < 0.3:
        limit = max(floor, rec[conf] // 8, rec[booted if booted != NONE else conf] // 8)
        if rng.random() < 0.6:
            signer = REC if quar or rng.random() < 0.2 else rng.randint(0, 1)
            image = img(min(limit + 1, NV), signer, int(rng.random() < 0.75))
        else:
            image = rng.choice(IMAGES)
        return (OP_INSTALL, image, 0, 0, _cut(rng, 3))
    if roll < 0.55:
        return (OP_BOOT, 0, 0, 0, _cut(rng, 4))
    if roll < 0.67 or (th and roll < 0.75):
        return (OP_CONFIRM, 0, 0, 0, _cut(rng, 1))
    if roll < 0.72:
        return (OP_REJECT, 0, 0, 0, _cut(rng, 1))
    if roll < 0.87:
        action = rng.randint(0, A_ACK)
        auth = rng.choices([1, 0, 2], [8, 1, 1])[0]
        number = rng.choices([last + 1, max(last, 1), last + rng.randint(2, 5)], [7, 2, 1])[0]
        return (OP_COMMAND, action, auth, number, _cut(rng, 1))
    slot = rng.randint(0, 1)
    kind = rng.random()
    if kind < 0.5:
        image = rec[slot] if rec[slot] else FIRST  # put back what the agent wrote
    elif kind < 0.75:
        image = 0
    else:
        image = rng.choice([*IMAGES, img(NV, X, 1)])
    return (OP_TAMPER, slot, image, 0, 0)


def code_walk(board: ModelBoard, rng: random.Random, length: int,
              coverage: Coverage) -> tuple[list[Op], list[State]]:
    """A random walk chosen on the code's side: the operations and the states it reached."""
    ops: list[Op] = []
    states: list[State] = []
    accepted: set[int] = set()
    secure = board.state()
    state = board.abstract(secure)
    for _ in range(length):
        op = random_op(rng, state)
        got, secure = step(board, op, secure, accepted)
        state = got[2:]
        coverage[(got[0], got[1])] += 1
        ops.append(op)
        states.append(got)
    return ops, states


def first_difference(ops: Sequence[Op], code: Sequence[State],
                     model: Callable[[Sequence[Op]], list[State]]) -> str | None:
    expected = model(ops)
    for i, (got, want) in enumerate(zip(code, expected, strict=True)):
        if got != want:
            return (f"step {i}, operation {ops[i]}:\n  model {want}\n  code  {got}\n"
                    f"operations so far: {list(ops[:i + 1])}")
    return None

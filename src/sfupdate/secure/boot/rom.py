"""The boot ROM: verify the agent bundle against the OTP root-key hash, then run exactly the
verified bytes.

    slot  := the agent partition to run (kernel.choose_agent: a bundle on trial once, else the
             confirmed one; the choice is recorded before it runs)
    key   := that partition's signer key; SHA-256(SPKI) must equal the ROOT_KEY_HASH fuse
    agent := the bundle SFUI, authenticated with that key (class sfu-agent), the sequence and
             digest secure storage recorded for it, its payload streamed into a private
             temporary file while hashed (sfupdate.secure.kernel.verify); a trial that fails falls
             back to the confirmed bundle
    measured boot := ["agent": image digest]   (in secure storage, through the kernel)
    run stage 2 from that file: `python -I agent.pyz boot BOARD` (`run_bundle`)

A bundle that fails any check never runs: the error propagates and nothing on the board
changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

from sfupdate import errors
from sfupdate.errors import DeviceStateError, SfuError
from sfupdate.secure.board.hal import Board, Slot
from sfupdate.secure.board.power import POWER_CUT_ENV, POWER_CUT_EXIT, Power, PowerCut
from sfupdate.secure.boot.stage2 import BootResult
from sfupdate.secure.kernel import Kernel, SecureState
from sfupdate.secure.kernel.verify import verify_agent_bundle

STAGE2_TIMEOUT: Final = 120

Stage2 = Callable[[Path], BootResult]


def boot(board: Board, stage2: Stage2) -> BootResult:
    """Choose, verify and measure the agent bundle (a new measured boot in secure storage),
    then hand over to `stage2` with exactly the verified bytes. A bundle on trial runs once
    (its try is recorded first); if it fails verification, the confirmed bundle runs."""
    kernel = Kernel(board.storage)
    state, slot = kernel.choose_agent()
    with tempfile.TemporaryDirectory(prefix="sfu-boot-") as tmp:
        bundle = Path(tmp) / "agent.pyz"
        try:
            digest = _extract(board, slot, state, bundle)
        except SfuError:
            if slot is state.agent.active:
                raise
            state = kernel.agent_trial_failed(slot)
            digest = _extract(board, state.agent.active, state, bundle)
        kernel.measure_agent(digest)
        return stage2(bundle)


def _extract(board: Board, slot: Slot, state: SecureState, out: Path) -> bytes:
    record = state.agent.bundle(slot)
    if record is None:
        raise DeviceStateError(f"agent partition {slot.value} holds no recorded bundle")
    digest, chunks = verify_agent_bundle(board, slot, record)
    with open(out, "wb") as f:
        for chunk in chunks:  # PayloadDigestError after the last chunk if tampered
            f.write(chunk)
    return digest


def run_bundle(board_dir: Path, power: Power | None = None) -> Stage2:
    """Stage 2 as a separate interpreter running the verified zipapp. A power cut armed in
    `power` and not yet reached is handed over to it."""

    def run(bundle: Path) -> BootResult:
        env = dict(os.environ)
        env.pop(POWER_CUT_ENV, None)
        if power is not None and power.cut_at is not None and power.cut_at > power.ops:
            env[POWER_CUT_ENV] = str(power.cut_at - power.ops)
        proc = subprocess.run([sys.executable, "-I", str(bundle), "boot", str(board_dir)],
                              capture_output=True, text=True, env=env, timeout=STAGE2_TIMEOUT,
                              check=False)
        if proc.returncode == POWER_CUT_EXIT:
            raise PowerCut(proc.stderr.strip().removeprefix("sfu: ") + " in stage 2")
        try:
            reply = json.loads(proc.stdout)
        except ValueError:
            raise SfuError(f"the agent bundle failed (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}") from None
        if proc.returncode == 0:
            return BootResult(**reply)
        cls = errors.error_class(str(reply.get("error"))) or SfuError
        raise cls(str(reply.get("message")))

    return run

"""The device under test, as the delivery tests see it: a real agent process on a real
provisioned sim board (running sequence 1 from slot A, floor 1), reached only over its socket.

`Device` is what the client calls (`status()`, `install()`): each call is forwarded to the
agent through a fresh `AgentClient`, and install sessions are counted, so a test can prove
that a resumed download stayed in ONE agent session. The assertions read the agent's own
status and the board's files afterwards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from sfupdate.formats.ipc.client import AgentStatus, InstallResult
from sfupdate.progress import Progress
from sfupdate.secure.boot.stage2 import BootResult
from tests.agent.support import RunningAgent
from tests.world import reboot

#: Board files a refused update must leave byte for byte: the running image, the fuses and the
#: agent bundle (secure storage may record that slot B became `invalid`).
_UNTOUCHABLE = ("slots/A.img", "slots/A.hdr", "hw/otp", "agent")


class Device:
    def __init__(self, agent: RunningAgent) -> None:
        self.agent = agent
        self.sessions = 0
        self.initial = self.status()
        self._files = self._untouchable_files()

    # --- the agent as the client sees it ----------------------------------------------------

    def status(self) -> AgentStatus:
        return self.agent.client().status()

    def install(self, chunks: Iterable[bytes], size: int | None = None,
                progress: Progress | None = None) -> InstallResult:
        self.sessions += 1
        return self.agent.client().install(chunks, size, progress)

    # --- the rest of the device's life --------------------------------------------------------

    def reboot(self) -> BootResult:
        """A boot: the ROM verifies the agent bundle, stage 2 selects, verifies and health-
        checks a slot (in this process; the CLI tests run the real stage-2 subprocess)."""
        return reboot(self.agent.board)

    def update_to(self, sequence: int) -> None:
        """Reboot into the trial and confirm it through the agent: the floor rises."""
        booted = self.reboot()
        assert (booted.sequence, booted.trial, booted.healthy) == (sequence, True, True)
        confirmed = self.agent.client().confirm()
        assert (confirmed.running_sequence, confirmed.rollback_floor) == (sequence, sequence)

    # --- assertions ---------------------------------------------------------------------------

    def assert_unchanged(self) -> None:
        """After a refusal: still running the confirmed image of slot A, same floor, no trial;
        the other slot at most left `invalid` by an aborted transfer; slot A's bytes, the fuses
        and the agent bundle untouched."""
        now = self.status()
        before = self.initial
        assert (now.running_slot, now.running_sequence, now.rollback_floor) == (
            before.running_slot, before.running_sequence, before.rollback_floor)
        assert now.trial_slot is None and now.trial_tries_left is None
        assert now.slots["A"] == before.slots["A"]
        assert now.slots["B"].state in ("empty", "invalid")
        assert self._untouchable_files() == self._files

    def assert_trial(self, sequence: int, payload_sha256: str | None = None) -> AgentStatus:
        """After a successful update: the new image is recorded as the trial in slot B with
        all its tries; the device still runs slot A and the floor has not moved."""
        now = self.status()
        assert now.trial_slot == "B" and now.trial_tries_left == 3
        assert now.slots["B"].state == "trial" and now.slots["B"].sequence == sequence
        if payload_sha256 is not None:
            assert now.slots["B"].digest == payload_sha256
        assert (now.running_slot, now.running_sequence) == ("A", self.initial.running_sequence)
        assert now.rollback_floor == self.initial.rollback_floor
        assert now.slots["A"] == self.initial.slots["A"]
        return now

    def _untouchable_files(self) -> dict[str, str]:
        root = self.agent.board
        paths: list[Path] = []
        for name in _UNTOUCHABLE:
            path = root / name
            paths += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in paths}

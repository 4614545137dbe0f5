"""Runtime integrity checks: re-measure the running slot, the agent bundle and the regions of
the installed integrity policy; log every mismatch in secure storage; revert when a policy
region says so and it is safe (the kernel's revert rule: SecureState.revert).

One check runs at a time; an attestation runs one first, so its integrity claims are measured
when the token is made. A mismatch is logged when it is found, not again at every later check
that finds the same thing (until the region matches again or the agent restarts); and the log
itself coalesces repeats and pins the first mismatch of each region (board/records.EventLog),
so nobody on the Rich-OS side can flush it by toggling a byte between checks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sfupdate.formats.remote import IntegrityPolicy, IntegrityResult
from sfupdate.formats.remote.eat import RESULT_ABSENT, RESULT_FAIL, RESULT_SUCCESS
from sfupdate.secure.agent.device import Device
from sfupdate.secure.agent.measure import (
    ABSENT,
    OK,
    Measurement,
    confirmed_failure,
    measure_agent,
    measure_region,
    measure_slot,
)
from sfupdate.secure.kernel import SecureState

RUNNING_SLOT: Final = "running-slot"
AGENT_BUNDLE: Final = "agent-bundle"
_CODES: Final = {OK: RESULT_SUCCESS, ABSENT: RESULT_ABSENT}


@dataclass(frozen=True)
class RegionCheck:
    """One re-measured region and what the agent did about it: "none" (it matches),
    "reported", "reverted" or "revert-refused" (the kernel's revert rule said no)."""

    region: str
    measurement: Measurement
    action: str


@dataclass(frozen=True)
class CheckResult:
    """One check: every region's result, and the event log's total after it."""

    regions: tuple[RegionCheck, ...]
    events_total: int

    def failed_regions(self) -> list[str]:
        return [r.region for r in self.regions if not r.measurement.ok]


class IntegrityMonitor:
    def __init__(self, device: Device, clock: Callable[[], float] = time.time) -> None:
        self.device = device
        self._clock = clock
        self._lock = threading.Lock()
        self._logged: dict[str, str] = {}  # region -> the mismatch already in the event log

    def measure_now(self) -> tuple[IntegrityResult, ...]:
        """Run a check; its results as RFC 9711 measurement results (for attestation)."""
        return tuple(IntegrityResult(r.region, _CODES.get(r.measurement.result, RESULT_FAIL))
                     for r in self.check().regions)

    def check(self) -> CheckResult:
        with self._lock:
            board = self.device.board
            state = self.device.kernel.state()
            running = state.boot.running
            regions = (IntegrityPolicy.decode(state.policy.body).regions if state.policy
                       else ())
            found: list[tuple[str, Measurement, str]] = [
                (RUNNING_SLOT, measure_slot(board, running, state), "report"),
                (AGENT_BUNDLE, measure_agent(board, state), "report")]
            for region in regions:
                found.append((f"policy:{region.name}", measure_region(board, running, region),
                              region.on_mismatch))
            return self._commit(state, found)

    def _commit(self, state: SecureState, found: list[tuple[str, Measurement, str]]
                ) -> CheckResult:
        """Log new mismatches; revert once if a newly failed region asks for it and it is
        safe. Events and the revert are one atomic storage write (by the kernel)."""
        new = {name: m.detail for name, m, _ in found
               if not m.ok and self._logged.get(name) != m.detail}
        wants_revert = any(name in new and action == "revert" for name, _, action in found)
        board = self.device.board
        total, revert_action = state.events.total, None
        if new or wants_revert:
            after, revert_action = self.device.kernel.record_integrity(
                int(self._clock()), list(new.items()),
                (lambda s: confirmed_failure(board, s)) if wants_revert else None, state)
            total = after.events.total
        self._logged = {name: m.detail for name, m, _ in found if not m.ok}
        results = []
        for name, measurement, action in found:
            done_action = "none"
            if not measurement.ok:  # a revert is tried when a mismatch is first found
                done_action = (revert_action or "reported") if (
                    action == "revert" and name in new) else "reported"
            results.append(RegionCheck(name, measurement, done_action))
        return CheckResult(tuple(results), total)

    def run_every(self, interval: float, stop: threading.Event,
                  log: Callable[[str], None]) -> None:
        """Check every `interval` seconds until `stop` is set (the agent's serve loop)."""
        while not stop.wait(interval):
            try:
                bad = self.check().failed_regions()
            except Exception as exc:  # a failed check must not end the periodic checks
                log(f"periodic integrity check failed: {type(exc).__name__}: {exc}")
                continue
            log("periodic integrity check: " + (f"MISMATCH in {', '.join(bad)}" if bad
                                                 else "all regions intact"))

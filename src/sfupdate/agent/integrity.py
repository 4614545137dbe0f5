"""Runtime integrity checks: re-measure the running slot, the agent bundle and the regions of
the installed integrity policy; log every mismatch in secure storage; revert when a policy
region says so and it is safe (agent/revert.py).

One check runs at a time; an attestation runs one first, so its integrity claims are measured
when the token is made. A mismatch is logged when it is found, not again at every later check
that finds the same thing (until the region matches again or the agent restarts): so nobody
on the Rich-OS side can flush the bounded log by asking for checks in a loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sfupdate.agent.attest import boot_measurements
from sfupdate.agent.device import (
    Device,
    device_info,
    event_log,
    policy_record,
    running_slot,
)
from sfupdate.agent.measure import (
    ABSENT,
    OK,
    Measurement,
    measure_agent,
    measure_region,
    measure_slot,
)
from sfupdate.agent.revert import check_revert
from sfupdate.agent.trust import load_trust_store
from sfupdate.board.records import RECORD_EVENTS, BootRecord, DeviceInfo
from sfupdate.errors import DeviceStateError
from sfupdate.ipc.messages import IntegrityReport, RegionResult
from sfupdate.remote import IntegrityPolicy, IntegrityResult
from sfupdate.remote.eat import RESULT_ABSENT, RESULT_FAIL, RESULT_SUCCESS
from sfupdate.remote.policy import Region
from sfupdate.sfui import TrustedKey

RUNNING_SLOT: Final = "running-slot"
AGENT_BUNDLE: Final = "agent-bundle"
_CODES: Final = {OK: RESULT_SUCCESS, ABSENT: RESULT_ABSENT}


@dataclass(frozen=True)
class _Snapshot:
    record: BootRecord
    keys: list[TrustedKey]
    device: DeviceInfo
    regions: tuple[Region, ...]
    agent_at_boot: bytes | None


class IntegrityMonitor:
    def __init__(self, device: Device, clock: Callable[[], float] = time.time) -> None:
        self.device = device
        self._clock = clock
        self._lock = threading.Lock()
        self._logged: dict[str, str] = {}  # region -> the mismatch already in the event log

    def measure_now(self) -> tuple[IntegrityResult, ...]:
        """Run a check; its results as RFC 9711 measurement results (for attestation)."""
        return tuple(IntegrityResult(r.region, _CODES.get(r.result, RESULT_FAIL))
                     for r in self.check().results)

    def check(self) -> IntegrityReport:
        with self._lock:
            snap = self._snapshot()
            running = running_slot(snap.record)
            image = snap.record.slot(running).image
            found: list[tuple[str, Measurement, str]] = []
            if image is None:
                found.append((RUNNING_SLOT, Measurement(ABSENT, "no image recorded"), "report"))
            else:
                found.append((RUNNING_SLOT, measure_slot(self.device.board, running, image,
                                                         snap.keys, snap.device,
                                                         snap.record.floor), "report"))
            found.append((AGENT_BUNDLE, measure_agent(self.device.board, snap.agent_at_boot),
                          "report"))
            for region in snap.regions:
                found.append((f"policy:{region.name}",
                              measure_region(self.device.board, snap.record, running, region),
                              region.on_mismatch))
            results, total = self._commit(snap, found)
            return IntegrityReport(results, total)

    def _snapshot(self) -> _Snapshot:
        with self.device.transaction() as control:
            storage = self.device.board.storage
            record, device = control.record, device_info(storage)
            keys = load_trust_store(storage).boot_keys()
            stored = policy_record(storage)
        regions = IntegrityPolicy.decode(stored.body).regions if stored else ()
        at_boot = [digest for stage, digest in boot_measurements(self.device.board)
                   if stage == "agent"]
        return _Snapshot(record, keys, device, regions, at_boot[-1] if at_boot else None)

    def _commit(self, snap: _Snapshot, found: list[tuple[str, Measurement, str]]
                ) -> tuple[tuple[RegionResult, ...], int]:
        """Log new mismatches; revert once if a newly failed region asks for it and it is
        safe. Events and the revert are one atomic storage write."""
        now = int(self._clock())
        new = {name: m.detail for name, m, _ in found
               if not m.ok and self._logged.get(name) != m.detail}
        wants_revert = any(name in new and action == "revert" for name, _, action in found)
        revert_action = "revert-refused"
        with self.device.transaction() as control:
            storage = self.device.board.storage
            log = old_log = event_log(storage)
            for name, detail in new.items():
                log = log.append(now, "integrity-mismatch", name, detail)
            if wants_revert:
                record = control.record
                try:
                    if record != snap.record:
                        raise DeviceStateError("the boot state changed during the check")
                    done = check_revert(self.device.board, record, snap.keys, snap.device)
                except DeviceStateError as exc:
                    log = log.append(now, "revert-refused", "integrity-policy", str(exc))
                else:
                    log = log.append(now, "revert", "integrity-policy", done)
                    control.reject_trial(also={RECORD_EVENTS: log.encode()})
                    revert_action = "reverted"
            if log != old_log and revert_action != "reverted":
                storage.write({RECORD_EVENTS: log.encode()})
        self._logged = {name: m.detail for name, m, _ in found if not m.ok}
        results = []
        for name, measurement, action in found:
            done_action = "none"
            if not measurement.ok:  # a revert is tried when a mismatch is first found
                done_action = (revert_action if action == "revert" and name in new
                               else "reported")
            results.append(RegionResult(name, measurement.result, measurement.detail,
                                        done_action))
        return tuple(results), log.total

    def run_every(self, interval: float, stop: threading.Event,
                  log: Callable[[str], None]) -> None:
        """Check every `interval` seconds until `stop` is set (the agent's serve loop)."""
        while not stop.wait(interval):
            try:
                report = self.check()
            except Exception as exc:  # a failed check must not end the periodic checks
                log(f"periodic integrity check failed: {type(exc).__name__}: {exc}")
                continue
            bad = [r.region for r in report.results if r.result != OK]
            log("periodic integrity check: " + (f"MISMATCH in {', '.join(bad)}" if bad
                                                 else "all regions intact"))

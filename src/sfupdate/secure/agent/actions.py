"""Signed remote commands, integrity policies and trust updates, on the device side.

The kernel does the deciding (sfupdate.secure.kernel: `Kernel.execute`, `SecureState.execute`): the
operator-role signature with the stored anchors; the target (this device's UEID, or its
vendor and class); a number strictly above the last one accepted; the expiry, judged by
max(host clock, time floor); the action's arguments. Then the command is spent: its number,
the time floor raised to its signed issue time, the action's effect and a pinned event, in
ONE atomic secure-storage write. If the action is refused for the device's state
(DeviceStateError: nothing to revert to, last firmware key...), the number is stored all the
same (with a `command-refused` event), so that command can never be replayed later.

This module adds what the kernel does not own: the device's identity (its UEID), the
re-verification of the confirmed slot a revert needs, and the signed answer: an attestation
token bound to the command (nonce: the command's hash, or the inspect nonce) that carries the
answer claim (number, action, outcome), which no plain `attest` can produce.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from sfupdate.formats.remote.eat import CommandAnswer
from sfupdate.secure.agent.attest import attest
from sfupdate.secure.agent.device import Device
from sfupdate.secure.agent.identity import IdentitySigner
from sfupdate.secure.agent.integrity import IntegrityMonitor
from sfupdate.secure.agent.measure import confirmed_failure
from sfupdate.secure.board.records import Event, TrustStore


@dataclass(frozen=True)
class CommandDone:
    action: str
    number: int
    message: str
    token: bytes


@dataclass(frozen=True)
class Audit:
    last_command: int
    quarantine: bytes | None
    policy_sequence: int | None
    total: int
    acknowledged: int
    time_floor: int
    events: tuple[Event, ...]
    trust: TrustStore


class RemoteActions:
    """Executes signed commands and installs signed policies for one device."""

    def __init__(self, device: Device, monitor: IntegrityMonitor,
                 clock: Callable[[], float] = time.time) -> None:
        self.device = device
        self.monitor = monitor
        self._clock = clock

    def _ueid(self) -> bytes:
        return IdentitySigner(self.device.kernel.identity_key()).ueid

    def execute(self, data: bytes) -> CommandDone:
        board = self.device.board
        command, outcome = self.device.kernel.execute(
            data, self._ueid(), int(self._clock()), lambda s: confirmed_failure(board, s))
        nonce = (command.arguments["nonce"] if command.action == "inspect"
                 else hashlib.sha256(data).digest())
        answer = CommandAnswer(command.number, command.action, outcome.message)
        token = attest(self.device, nonce, self.monitor.measure_now(), int(self._clock()),
                       answer)
        return CommandDone(command.action, command.number, outcome.message, token)

    def install_policy(self, data: bytes) -> tuple[int, int]:
        """Verify and store a signed integrity policy; returns (sequence, region count)."""
        return self.device.kernel.install_policy(data, self._ueid(), int(self._clock()))

    def update_trust(self, data: bytes) -> tuple[int, str]:
        """Verify and apply a signed trust update; returns (trust version, what changed)."""
        return self.device.kernel.update_trust(data, self._ueid(), int(self._clock()))

    def audit(self) -> Audit:
        state = self.device.kernel.state()
        remote, events = state.remote, state.events
        return Audit(remote.last_command, remote.quarantine,
                     state.policy.sequence if state.policy else None, events.total,
                     events.acknowledged, remote.time_floor, events.events, state.trust)

"""Signed remote commands and integrity policies, on the device side.

Order of checks for a command (nothing is written before all of them pass):
1. the signature, with the `operator` trust anchors only (a firmware or recovery key is an
   unknown key here);
2. the target: this device's UEID, or its vendor and class;
3. the number: strictly above the last one accepted (a replay, or an older command, is
   refused);
4. the expiry, by the agent's clock;
5. the action's arguments.
Then the command is spent: its number is stored together with the action's effect and an
event, in ONE atomic secure-storage write. If the action is refused for the device's state
(DeviceStateError: nothing to revert to, last firmware key...), the number is stored all the
same (with a `command-refused` event), so that command can never be replayed later, when the
state would let it through.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from sfupdate.agent.attest import attest
from sfupdate.agent.device import (
    Device,
    device_info,
    event_log,
    policy_record,
    remote_state,
)
from sfupdate.agent.identity import load_identity
from sfupdate.agent.integrity import IntegrityMonitor
from sfupdate.agent.measure import slot_signer
from sfupdate.agent.revert import check_revert
from sfupdate.agent.trust import load_trust_store
from sfupdate.board.hal import Board
from sfupdate.board.records import (
    RECORD_EVENTS,
    RECORD_POLICY,
    RECORD_REMOTE,
    RECORD_TRUST,
    BootRecord,
    DeviceInfo,
    PolicyRecord,
    RemoteState,
    Role,
    TrustStore,
)
from sfupdate.errors import (
    DeviceStateError,
    ExpiredError,
    ReplayError,
    SchemaError,
    UnknownKeyError,
    WrongClassError,
    WrongDeviceError,
    WrongVendorError,
)
from sfupdate.ipc.messages import AuditInfo, EventEntry, RemoteResult
from sfupdate.remote import RemoteCommand, Target, verify_command, verify_policy
from sfupdate.remote.eat import MAX_NONCE, MIN_NONCE
from sfupdate.sfui import TrustedKey

_KID_SHOWN: Final = 16


@dataclass(frozen=True)
class _Context:
    board: Board
    record: BootRecord
    trust: TrustStore
    state: RemoteState  # with the command's number already recorded
    device: DeviceInfo


@dataclass(frozen=True)
class _Effect:
    message: str
    state: RemoteState
    records: Mapping[str, bytes] = field(default_factory=dict)
    reject_trial: bool = False


def _shown(kid: bytes) -> str:
    return kid.hex()[:_KID_SHOWN]


def _operators(trust: TrustStore) -> list[TrustedKey]:
    keys = trust.keys(Role.OPERATOR)
    if not keys:
        raise UnknownKeyError("this device trusts no operator key: it accepts no signed "
                              "remote command or policy")
    return keys


def check_target(target: Target, ueid: bytes, device: DeviceInfo) -> None:
    if target.ueid is not None:
        if not hmac.compare_digest(target.ueid, ueid):
            raise WrongDeviceError(f"signed for device {target.ueid.hex()[:_KID_SHOWN]}..., "
                                   f"this is {ueid.hex()[:_KID_SHOWN]}...")
    elif target.vendor_id != device.vendor_id:
        raise WrongVendorError(f"signed for vendor {target.vendor_id}, this device is "
                               f"{device.vendor_id}")
    elif target.class_id != device.class_id:
        raise WrongClassError(f"signed for device class {target.class_id}, this device is "
                              f"{device.class_id}")


class RemoteActions:
    """Executes signed commands and installs signed policies for one device."""

    def __init__(self, device: Device, monitor: IntegrityMonitor,
                 clock: Callable[[], float] = time.time) -> None:
        self.device = device
        self.monitor = monitor
        self._clock = clock

    def execute(self, data: bytes) -> RemoteResult:
        now = int(self._clock())
        with self.device.transaction() as control:
            storage = self.device.board.storage
            trust = load_trust_store(storage)
            command, signer = verify_command(data, _operators(trust))
            info = device_info(storage)
            check_target(command.target, load_identity(storage).ueid, info)
            state = remote_state(storage)
            if command.number <= state.last_command:
                raise ReplayError(f"command number {command.number} is not above "
                                  f"{state.last_command}, the last one this device accepted")
            if command.expires is not None and now >= command.expires:
                raise ExpiredError(f"the command expired at {command.expires} (device clock "
                                   f"{now})")
            _check_arguments(command)
            ctx = _Context(self.device.board, control.record, trust,
                           replace(state, last_command=command.number), info)
            who = f"command {command.number} by operator key {_shown(signer.kid)}"
            log = event_log(storage)
            try:
                effect = _ACTIONS[command.action](ctx, command)
            except DeviceStateError as exc:
                log = log.append(now, "command-refused", command.action, f"{who}: {exc}")
                storage.write({RECORD_REMOTE: ctx.state.encode(), RECORD_EVENTS: log.encode()})
                raise
            log = log.append(now, "command", command.action, f"{who}: {effect.message}")
            changes = {RECORD_REMOTE: effect.state.encode(), RECORD_EVENTS: log.encode(),
                       **effect.records}
            if effect.reject_trial:
                control.reject_trial(also=changes)
            else:
                storage.write(changes)
        nonce = (command.arguments["nonce"] if command.action == "inspect"
                 else hashlib.sha256(data).digest())
        token = attest(self.device, nonce, self.monitor.measure_now(), int(self._clock()))
        return RemoteResult(command.action, command.number, effect.message, token)

    def install_policy(self, data: bytes) -> tuple[int, int]:
        """Verify and store a signed integrity policy; returns (sequence, region count)."""
        now = int(self._clock())
        with self.device.transaction():
            storage = self.device.board.storage
            policy, signer, body = verify_policy(data, _operators(load_trust_store(storage)))
            check_target(policy.target, load_identity(storage).ueid, device_info(storage))
            stored = policy_record(storage)
            last = stored.sequence if stored else 0
            if policy.sequence <= last:
                raise ReplayError(f"policy sequence {policy.sequence} is not above {last}, "
                                  "the installed policy's")
            log = event_log(storage).append(
                now, "policy-installed", f"policy {policy.sequence}",
                f"{len(policy.regions)} regions, by operator key {_shown(signer.kid)}")
            storage.write({RECORD_POLICY: PolicyRecord(policy.sequence, body).encode(),
                           RECORD_EVENTS: log.encode()})
        return policy.sequence, len(policy.regions)

    def audit(self) -> AuditInfo:
        with self.device.transaction():
            storage = self.device.board.storage
            state, log, policy = remote_state(storage), event_log(storage), policy_record(storage)
        return AuditInfo(state.last_command, state.quarantine.hex() if state.quarantine else None,
                         policy.sequence if policy else None, log.total,
                         tuple(EventEntry(e.number, e.time, e.kind, e.subject, e.detail)
                               for e in log.events))


def _check_arguments(command: RemoteCommand) -> None:
    args = command.arguments
    if command.action == "inspect" and not MIN_NONCE <= len(args["nonce"]) <= MAX_NONCE:
        raise SchemaError(f"inspect needs a nonce of {MIN_NONCE} to {MAX_NONCE} bytes")
    for name in ("key_id", "recovery_key_id"):
        if name in args and len(args[name]) != 32:
            raise SchemaError(f"{command.action}: {name} must be a 32-byte key ID")


# --- the actions -----------------------------------------------------------------------------


def _inspect(ctx: _Context, command: RemoteCommand) -> _Effect:
    return _Effect("attestation follows", ctx.state)


def _revert(ctx: _Context, command: RemoteCommand) -> _Effect:
    done = check_revert(ctx.board, ctx.record, ctx.trust.boot_keys(), ctx.device)
    return _Effect(done, ctx.state, reject_trial=True)


def _quarantine(ctx: _Context, command: RemoteCommand) -> _Effect:
    kid = command.arguments["recovery_key_id"]
    if ctx.trust.active(Role.RECOVERY, kid) is None:
        raise DeviceStateError(f"key {_shown(kid)} is not a provisioned recovery anchor")
    return _Effect(f"quarantined: only images signed by recovery key {_shown(kid)} are "
                   "accepted until released", replace(ctx.state, quarantine=kid))


def _release(ctx: _Context, command: RemoteCommand) -> _Effect:
    if ctx.state.quarantine is None:
        raise DeviceStateError("the device is not quarantined")
    return _Effect("released from quarantine: images signed by firmware anchors are "
                   "accepted again", replace(ctx.state, quarantine=None))


def _revoke_key(ctx: _Context, command: RemoteCommand) -> _Effect:
    kid = command.arguments["key_id"]
    if ctx.trust.active(Role.FIRMWARE, kid) is None:
        raise DeviceStateError(f"no active firmware anchor has key ID {_shown(kid)} "
                               "(revoke-key revokes firmware-signing anchors only)")
    trust = ctx.trust.revoke(Role.FIRMWARE, kid)
    if not trust.keys(Role.FIRMWARE) and not trust.keys(Role.RECOVERY):
        raise DeviceStateError("refusing to revoke the last firmware anchor: no recovery "
                               "anchor is provisioned, so the device could never be updated "
                               "again")
    keys = ctx.trust.boot_keys()
    if slot_signer(ctx.board, ctx.record.confirmed, keys) == kid:
        raise DeviceStateError(f"key {_shown(kid)} signed the confirmed image in slot "
                               f"{ctx.record.confirmed.value}: revoking it would leave nothing "
                               "to boot; install and confirm an image signed by another key "
                               "first")
    message = f"firmware key {_shown(kid)} revoked (trust store version {trust.version})"
    trial = ctx.record.trial
    drop_trial = trial is not None and slot_signer(ctx.board, trial, keys) == kid
    if drop_trial:
        assert trial is not None
        message += f"; trial slot {trial.value}, signed by it, marked bad"
    return _Effect(message, ctx.state, {RECORD_TRUST: trust.encode()}, drop_trial)


def _reboot(ctx: _Context, command: RemoteCommand) -> _Effect:
    return _Effect("reboot requested (on the simulated board the next `sfu board boot` "
                   "performs it)", ctx.state)


_ACTIONS: Final[Mapping[str, Callable[[_Context, RemoteCommand], _Effect]]] = {
    "inspect": _inspect,
    "revert": _revert,
    "quarantine": _quarantine,
    "release": _release,
    "revoke-key": _revoke_key,
    "reboot": _reboot,
}


__all__ = ["RemoteActions", "check_target"]

"""The secure state and its legal transitions, as pure functions: no I/O, no clock.

`SecureState` is everything the secure world decides on, as recorded in secure storage:
the device's identity and class, the trust anchors, boot control and the rollback floor (with
the facts recorded for each slot when its image was authenticated), the remote-command state
(last command number, quarantine, time floor), the event log, the integrity policy and the
measured boot. Each transition is a method that returns a NEW state or raises an
`sfupdate.errors` refusal; `check()` holds the invariants every stored state satisfies and
`check_successor()` the ones between two consecutive states (nothing monotonic goes down).
`sfupdate.secure.kernel.Kernel` is the only code that loads and saves it (one atomic write each).

The rules that matter (docs/agent.md has the slot table):

* An install targets the slot that is neither the confirmed one nor the running one. While a
  trial runs (or a rejected trial still runs) there is no such slot: the install is refused
  until the trial is confirmed or the device reboots into its confirmed image.
* A trial is recorded only with the facts of its authentication (signer key ID, vendor,
  class, sequence, digest, size), and only above the floor, the confirmed and the running
  image, signed by an anchor the install accepts now.
* Confirm needs a trial that the boot code started since it was recorded and that passed its
  health check (`trial_healthy`), whose recorded signer is still an active anchor (under
  quarantine: the quarantine anchor).
* Revoke, quarantine and confirm read the recorded signer, never a slot header.
* An install needs signatures by the firmware threshold of distinct active firmware anchors
  (under quarantine: the recovery anchor alone); a trust update needs, for each role it
  changes, that role's current threshold, a version above the store's, and must keep the
  confirmed image's signer. No role is left with fewer active anchors than its threshold.
* A command expires by max(host clock, time floor); every accepted command raises the floor
  to its signed issue time.
* The agent bundle has its own A/B partitions and floor: a new bundle (signed by the key the
  ROM trusts) runs once on trial and becomes the agent only if it confirms itself during that
  boot; otherwise the ROM runs the confirmed bundle again.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Final

from sfupdate.errors import (
    DeviceStateError,
    DowngradeError,
    ExpiredError,
    QuarantinedError,
    ReplayError,
    SchemaError,
    StorageIntegrityError,
    ThresholdError,
    UnknownKeyError,
    WrongDeviceError,
)
from sfupdate.formats.remote import RemoteCommand, Target
from sfupdate.formats.remote.eat import MAX_NONCE, MIN_NONCE
from sfupdate.formats.remote.trust import TrustUpdate
from sfupdate.formats.sfui import TrustedKey
from sfupdate.formats.sfui.uuids import check_identity
from sfupdate.secure.board.hal import Slot
from sfupdate.secure.board.records import (
    DEFAULT_TRIES,
    RECORD_AGENT,
    RECORD_BOOT,
    RECORD_DEVICE,
    RECORD_EVENTS,
    RECORD_MEASURED,
    RECORD_POLICY,
    RECORD_REMOTE,
    RECORD_TRUST,
    AgentRecord,
    BootRecord,
    BundleRecord,
    DeviceInfo,
    EventLog,
    ImageRecord,
    MeasuredBoot,
    PolicyRecord,
    RemoteState,
    Role,
    SlotRecord,
    SlotStatus,
    TrustStore,
)
from sfupdate.secure.kernel.rotation import authorize, rotated

_SHOWN: Final = 16

#: SecureState field -> secure-storage record name. Fields absent from storage take their
#: defaults; device, trust, boot and agent exist from provisioning on.
_RECORDS: Final = {"device": RECORD_DEVICE, "trust": RECORD_TRUST, "boot": RECORD_BOOT,
                   "agent": RECORD_AGENT, "remote": RECORD_REMOTE, "events": RECORD_EVENTS,
                   "policy": RECORD_POLICY, "measured": RECORD_MEASURED}


def shown(kid: bytes) -> str:
    """A key ID as the messages show it."""
    return kid.hex()[:_SHOWN]


@dataclass(frozen=True)
class CommandOutcome:
    """The state after a verified command was spent, what it did, and, when its action was
    refused for the device's state, that refusal (the number is spent all the same)."""

    state: SecureState
    message: str
    refused: DeviceStateError | None = None


@dataclass(frozen=True)
class SecureState:
    device: DeviceInfo
    trust: TrustStore
    boot: BootRecord
    agent: AgentRecord
    remote: RemoteState = field(default_factory=RemoteState)
    events: EventLog = field(default_factory=EventLog)
    policy: PolicyRecord | None = None
    measured: MeasuredBoot = field(default_factory=MeasuredBoot)

    # --- loading and saving ----------------------------------------------------------------

    @classmethod
    def from_records(cls, records: Mapping[str, bytes]) -> SecureState:
        """Decode every record (StorageIntegrityError if one is malformed or inconsistent);
        DeviceStateError on a board that was never provisioned."""
        missing = [name for name in (RECORD_DEVICE, RECORD_TRUST, RECORD_BOOT, RECORD_AGENT)
                   if name not in records]
        if missing:
            raise DeviceStateError("the board is not provisioned (secure storage holds no "
                                   f"{', '.join(missing)} record)")
        def has(name: str) -> bool:
            return name in records

        state = cls(
            DeviceInfo.decode(records[RECORD_DEVICE]),
            TrustStore.decode(records[RECORD_TRUST]),
            BootRecord.decode(records[RECORD_BOOT]),
            AgentRecord.decode(records[RECORD_AGENT]),
            RemoteState.decode(records[RECORD_REMOTE]) if has(RECORD_REMOTE) else RemoteState(),
            EventLog.decode(records[RECORD_EVENTS]) if has(RECORD_EVENTS) else EventLog(),
            PolicyRecord.decode(records[RECORD_POLICY]) if has(RECORD_POLICY) else None,
            MeasuredBoot.decode(records[RECORD_MEASURED]) if has(RECORD_MEASURED)
            else MeasuredBoot(),
        )
        state.check()
        return state

    def changed_records(self, old: SecureState | None) -> dict[str, bytes]:
        """The records that differ from `old` (all of them without one), encoded."""
        changes = {}
        for member in fields(self):
            value = getattr(self, member.name)
            if value is not None and (old is None or value != getattr(old, member.name)):
                changes[_RECORDS[member.name]] = value.encode()
        return changes

    # --- invariants ----------------------------------------------------------------------

    def check(self) -> None:
        """Invariants of every stored state (StorageIntegrityError: the kernel never writes
        one that breaks them, so a stored one that does was not written by it)."""
        self.boot.check()
        self.agent.check()
        confirmed = self.boot.confirmed_image
        if any(self.trust.boot_anchor(signer) is None for signer in confirmed.signers()):
            raise StorageIntegrityError("the confirmed image is recorded with a signer that is "
                                        "not an active firmware or recovery anchor")
        # A trial whose signer is no longer active is not an inconsistency: the boot marks it
        # bad and confirm refuses it.
        for image in (confirmed, self.boot.trial_image):
            if image is not None and (image.vendor_id, image.class_id) != (
                    self.device.vendor_id, self.device.class_id):
                raise StorageIntegrityError("an image is recorded for another vendor or class")
        quarantine = self.remote.quarantine
        if quarantine is not None and self.trust.active(Role.RECOVERY, quarantine) is None:
            raise StorageIntegrityError("the quarantine names no active recovery anchor")
        short = self.trust.short_of_threshold()
        if short:
            raise StorageIntegrityError(f"a threshold cannot be met: {'; '.join(short)}")

    def check_successor(self, old: SecureState) -> None:
        """Nothing monotonic goes down between two stored states (defence in depth)."""
        pairs = [("the rollback floor", old.boot.floor, self.boot.floor),
                 ("the agent's rollback floor", old.agent.floor, self.agent.floor),
                 ("the remote command number", old.remote.last_command,
                  self.remote.last_command),
                 ("the time floor", old.remote.time_floor, self.remote.time_floor),
                 ("the trust store version", old.trust.version, self.trust.version),
                 ("the event count", old.events.total, self.events.total),
                 ("the policy sequence", old.policy.sequence if old.policy else 0,
                  self.policy.sequence if self.policy else 0)]
        for what, before, after in pairs:
            if after < before:
                raise DeviceStateError(f"refusing to lower {what} ({before} -> {after})")
        if self.device != old.device:
            raise DeviceStateError("refusing to change the device's identity")
        revoked = {(a.role, a.spki) for a in old.trust.anchors if a.revoked}
        if not revoked <= {(a.role, a.spki) for a in self.trust.anchors if a.revoked}:
            raise DeviceStateError("refusing to un-revoke a trust anchor")

    # --- what the install accepts ----------------------------------------------------------

    @property
    def running_image(self) -> ImageRecord:
        image = self.boot.slot(self.boot.running).image
        return image if image is not None else self.boot.confirmed_image

    def install_keys(self) -> list[TrustedKey]:
        """The keys an install may be signed with: the active firmware anchors, or while the
        device is quarantined, only its recovery anchor."""
        quarantine = self.remote.quarantine
        if quarantine is not None:
            anchor = self.trust.active(Role.RECOVERY, quarantine)
            if anchor is None:  # check() excludes it; fail closed anyway
                raise QuarantinedError("the device is quarantined and its recovery key is "
                                       "not an active recovery anchor")
            return [anchor.key]
        keys = self.trust.keys(Role.FIRMWARE)
        if not keys:
            raise DeviceStateError("the board trusts no firmware signing key")
        return keys

    def check_signers(self, signers: Sequence[bytes]) -> bytes:
        """The signer an install records, given the key IDs of every distinct key whose
        signature over the manifest verified: the first active firmware anchor among them
        once at least the firmware threshold of distinct active firmware anchors signed
        (ThresholdError otherwise); while quarantined, the recovery anchor alone."""
        quarantine = self.remote.quarantine
        if quarantine is not None:
            if any(hmac.compare_digest(kid, quarantine) for kid in signers):
                return quarantine
            raise QuarantinedError(
                "the device is quarantined: only images signed by recovery key "
                f"{shown(quarantine)} are accepted until released")
        need = self.trust.threshold(Role.FIRMWARE)
        have = [kid for kid in signers if self.trust.active(Role.FIRMWARE, kid) is not None]
        if not have:
            shown_ids = ", ".join(shown(kid) for kid in signers) or "none"
            raise UnknownKeyError(f"signed by no active firmware anchor (keys {shown_ids})")
        if self.trust.count_signers(Role.FIRMWARE, have) < need:
            raise ThresholdError(f"signed by {len(set(have))} distinct active firmware "
                                 f"anchors; this device requires {need}")
        return have[0]

    def install_slot(self) -> Slot:
        """The slot an install writes: neither the confirmed one nor the running one."""
        running, confirmed = self.boot.running, self.boot.confirmed
        if running is not confirmed:
            what = ("the trial" if running is self.boot.trial
                    else f"a {self.boot.slot(running).status.value} image")
            raise DeviceStateError(
                f"slot {running.value} runs {what} and slot {confirmed.value} holds the "
                "confirmed image: an install never overwrites either; confirm the trial, or "
                f"reboot into slot {confirmed.value}, first")
        return confirmed.other

    def check_install(self, image: ImageRecord) -> None:
        """Everything the state says about an authenticated image before it is written and
        again when it is recorded: vendor and class, an acceptable signer, and a sequence
        above the floor, the confirmed and the running image."""
        check_identity(image, self.device.vendor_id, self.device.class_id)
        if not any(hmac.compare_digest(k.kid, image.signer) for k in self.install_keys()):
            if self.remote.quarantine is not None:
                raise QuarantinedError(
                    "the device is quarantined: only images signed by recovery key "
                    f"{shown(self.remote.quarantine)} are accepted until released")
            raise UnknownKeyError(f"key {shown(image.signer)} is not an active firmware anchor")
        running = self.running_image.sequence
        limit = max(self.boot.floor, self.boot.confirmed_image.sequence, running)
        if image.sequence <= limit:
            raise DowngradeError(f"sequence number {image.sequence} is not above {limit} "
                                 f"(running {running}, rollback floor {self.boot.floor})")
        check_kept(image, self.boot.confirmed_image)

    # --- install ---------------------------------------------------------------------------

    def begin_install(self) -> tuple[SecureState, Slot]:
        """Mark the install slot INVALID (dropping a trial not yet booted that it held)
        before a byte of it is overwritten."""
        slot = self.install_slot()
        boot = replace(self.boot.with_slot(slot, SlotRecord(SlotStatus.INVALID)),
                       trial=None, tries_left=0, trial_healthy=False)
        return replace(self, boot=boot), slot

    def record_trial(self, slot: Slot, image: ImageRecord, signers: Sequence[bytes],
                     tries: int = DEFAULT_TRIES) -> SecureState:
        """A complete, digest-checked image in `slot` becomes the trial, with its facts;
        `signers` (the key IDs whose signatures verified) must still meet the threshold and
        name the recorded signer."""
        if tries < 1:
            raise DeviceStateError("a trial needs at least one try")
        if slot is not self.install_slot() or \
                self.boot.slot(slot).status is not SlotStatus.INVALID:
            raise DeviceStateError(f"slot {slot.value} was not prepared for an install")
        if not hmac.compare_digest(self.check_signers(signers), image.signer):
            raise DeviceStateError("the image's recorded signer is not the one its "
                                   "signatures name")
        self.check_install(image)
        boot = replace(self.boot.with_slot(slot, SlotRecord(SlotStatus.TRIAL, image)),
                       trial=slot, tries_left=tries, trial_healthy=False)
        return replace(self, boot=boot)

    # --- boot ------------------------------------------------------------------------------

    def measure_agent(self, digest: bytes) -> SecureState:
        """The boot ROM starts a new measured boot with the agent bundle it verified."""
        return replace(self, measured=MeasuredBoot().extend("agent", digest,
                                                            "sfupdate agent bundle"))

    def start_boot(self) -> tuple[SecureState, Slot, bool]:
        """Choose the slot to boot: the trial while it has tries (one is spent BEFORE it
        runs), else the confirmed slot (a trial out of tries is marked bad)."""
        boot = self.boot
        if boot.trial is not None and boot.tries_left > 0:
            return replace(self, boot=replace(boot, tries_left=boot.tries_left - 1,
                                              booted=boot.trial, trial_healthy=False)), \
                boot.trial, True
        if boot.trial is not None:
            boot = _reject(boot)
        return replace(self, boot=replace(boot, booted=boot.confirmed)), boot.confirmed, False

    def signer_keys(self, image: ImageRecord) -> list[TrustedKey]:
        """The keys a slot's headers must verify with: its recorded signer (and those of the
        components a set kept), while each is an active firmware or recovery anchor (else
        none: the slot cannot verify)."""
        anchors = [self.trust.boot_anchor(signer) for signer in image.signers()]
        return [a.key for a in anchors if a is not None] if all(anchors) else []

    def booted(self, slot: Slot, manifest_digest: bytes, healthy: bool) -> SecureState:
        """The boot code verified `slot` (the one start_boot chose) and ran its health
        check: measure it; a healthy trial may now be confirmed, an unhealthy one is bad."""
        boot = self.boot
        if boot.booted is not slot:
            raise DeviceStateError(f"slot {slot.value} is not the slot this boot started")
        image = boot.slot(slot).image
        assert image is not None  # BootRecord.check(): a booted slot holds an image
        kind = "trial" if boot.trial is slot else "confirmed"
        measured = self.measured.extend(
            "manifest", manifest_digest,
            f"slot {slot.value} ({kind}) sequence {image.sequence}").extend(
            "firmware", image.digest, f"slot {slot.value} image")
        if boot.trial is slot:
            boot = replace(boot, trial_healthy=True) if healthy else _reject(boot)
        return replace(self, boot=boot, measured=measured)

    def trial_failed(self, slot: Slot) -> SecureState:
        """The trial failed verification at boot: mark it bad. The confirmed slot is never
        demoted here (the boot refuses to run it and halts instead)."""
        if self.boot.trial is not slot:
            return self
        return replace(self, boot=_reject(self.boot))

    # --- the agent bundle: its own A/B partitions, trial once, confirmed by itself ------------

    def check_agent_install(self, bundle: BundleRecord) -> None:
        """A new agent bundle must be above the agent's floor and the running bundle."""
        limit = max(self.agent.floor, self.agent.active_bundle.sequence)
        if bundle.sequence <= limit:
            raise DowngradeError(f"agent bundle sequence {bundle.sequence} is not above "
                                 f"{limit} (the agent's rollback floor)")

    def begin_agent_install(self) -> tuple[SecureState, Slot]:
        """The inactive agent partition is marked empty (a bundle on trial there is dropped)
        before a byte of it is overwritten."""
        slot = self.agent.active.other
        agent = replace(self.agent.with_bundle(slot, None), trial=None, tried=False)
        return replace(self, agent=agent), slot

    def record_agent_trial(self, slot: Slot, bundle: BundleRecord) -> SecureState:
        if slot is self.agent.active or self.agent.bundle(slot) is not None:
            raise DeviceStateError(f"agent partition {slot.value} was not prepared for an "
                                   "install")
        self.check_agent_install(bundle)
        agent = replace(self.agent.with_bundle(slot, bundle), trial=slot, tried=False)
        return replace(self, agent=agent)

    def choose_agent(self) -> tuple[SecureState, Slot]:
        """The ROM's choice, persisted before the bundle runs: a bundle on trial runs once;
        if it did not confirm itself during that boot, it is dropped and the confirmed bundle
        runs."""
        agent = self.agent
        if agent.trial is not None and not agent.tried:
            return replace(self, agent=replace(agent, tried=True)), agent.trial
        if agent.trial is not None:
            return replace(self, agent=_drop_agent_trial(agent)), agent.active
        return self, agent.active

    def agent_trial_failed(self, slot: Slot) -> SecureState:
        """The bundle on trial failed the ROM's verification: drop it."""
        if self.agent.trial is not slot:
            return self
        return replace(self, agent=_drop_agent_trial(self.agent))

    def confirm_agent(self) -> SecureState:
        """The bundle on trial, having booted the device (its stage 2 got this far), confirms
        itself: it becomes the active bundle and the agent's floor rises to it. Only if the
        agent this boot measured IS the trial bundle; otherwise nothing changes."""
        agent = self.agent
        measured = self.measured.digests("agent")
        bundle = None if agent.trial is None else agent.bundle(agent.trial)
        if agent.trial is None or not agent.tried or bundle is None or not measured \
                or not hmac.compare_digest(measured[-1], bundle.digest):
            return self
        return replace(self, agent=replace(agent, active=agent.trial, trial=None, tried=False,
                                           floor=max(agent.floor, bundle.sequence)))

    # --- confirm, reject, revert -------------------------------------------------------------

    def confirm(self) -> SecureState:
        """The running, healthy trial becomes the confirmed image; the floor rises to it."""
        boot = self.boot
        trial = boot.trial
        if trial is None:
            raise DeviceStateError("there is no image on trial to confirm")
        if boot.booted is not trial or not boot.trial_healthy:
            raise DeviceStateError(f"the trial in slot {trial.value} has not been booted and "
                                   "passed its health check since it was installed; reboot "
                                   "first")
        image = boot.slot(trial).image
        assert image is not None  # BootRecord.check()
        quarantine = self.remote.quarantine
        if quarantine is not None and not hmac.compare_digest(image.signer, quarantine):
            raise QuarantinedError(f"the device is quarantined: the trial in slot "
                                   f"{trial.value} is not signed by recovery key "
                                   f"{shown(quarantine)}")
        lost = [s for s in image.signers() if self.trust.boot_anchor(s) is None]
        if lost:  # check() excludes it
            raise UnknownKeyError(f"the trial's signer {shown(lost[0])} is no longer an "
                                  "active anchor")
        previous = boot.slot(boot.confirmed)
        boot = boot.with_slot(trial, SlotRecord(SlotStatus.CONFIRMED, image))
        boot = boot.with_slot(boot.confirmed, SlotRecord(SlotStatus.SUPERSEDED, previous.image))
        boot = replace(boot, confirmed=trial, trial=None, tries_left=0, trial_healthy=False,
                       floor=max(boot.floor, image.sequence))
        return replace(self, boot=boot)

    def reject_trial(self) -> SecureState:
        """The trial failed (health check, refused, reverted): mark it BAD."""
        if self.boot.trial is None:
            raise DeviceStateError("there is no image on trial to reject")
        return replace(self, boot=_reject(self.boot))

    def revert(self, confirmed_failure: str | None) -> tuple[SecureState, str]:
        """Back to the confirmed image: possible only while the device runs a trial and the
        confirmed slot verifies now (`confirmed_failure` is None, else why it does not).
        Returns the new state and what it did; DeviceStateError says why it is impossible."""
        boot = self.boot
        running = boot.running
        if boot.slot(running).status is SlotStatus.BAD:
            raise DeviceStateError(f"slot {running.value} is already marked bad: the next boot "
                                   f"runs confirmed slot {boot.confirmed.value}")
        if boot.trial is None or running is not boot.trial:
            raise DeviceStateError(
                f"slot {running.value} runs the confirmed image (sequence "
                f"{self.running_image.sequence}); no other authentic image at or above the "
                f"rollback floor {boot.floor} exists to revert to: install a fixed image "
                "instead")
        if confirmed_failure is not None:
            raise DeviceStateError(f"the confirmed image fails verification "
                                   f"({confirmed_failure}); refusing to revert onto it")
        trial = boot.slot(boot.trial).image
        assert trial is not None
        done = (f"trial slot {boot.trial.value} (sequence {trial.sequence}) marked bad; the "
                f"next boot runs confirmed slot {boot.confirmed.value} (sequence "
                f"{boot.confirmed_image.sequence})")
        return replace(self, boot=_reject(boot)), done

    # --- signed remote commands and policies -------------------------------------------------

    def check_target(self, target: Target, ueid: bytes) -> None:
        device = self.device
        if target.ueid is not None:
            if not hmac.compare_digest(target.ueid, ueid):
                raise WrongDeviceError(f"signed for device {target.ueid.hex()[:_SHOWN]}..., "
                                       f"this is {ueid.hex()[:_SHOWN]}...")
        else:
            check_identity(target, device.vendor_id, device.class_id,
                           "the signed command or policy")

    def clock(self, now: int) -> int:
        """The agent's notion of the time: the host clock, never below the time floor."""
        return max(now, self.remote.time_floor)

    def execute(self, command: RemoteCommand, signer: bytes, ueid: bytes, now: int,
                confirmed_failure: str | None) -> CommandOutcome:
        """Spend a command whose operator signature verified: target, number, expiry (by
        max(now, time floor)) and room in the log are checked first (a refusal there changes
        nothing); then the number and the time floor are recorded with the action's effect
        and a pinned event, or with a `command-refused` event if the action does not fit the
        device's state."""
        self.check_target(command.target, ueid)
        _check_arguments(command)
        last = self.remote.last_command
        if command.number <= last:
            raise ReplayError(f"command number {command.number} is not above {last}, the "
                              "last one this device accepted")
        clock = self.clock(now)
        if command.expires is not None and clock >= command.expires:
            raise ExpiredError(f"the command expired at {command.expires} (device time {clock}"
                               f", never below the time floor {self.remote.time_floor})")
        if command.action != "acknowledge" and not self.events.operator_room():
            raise DeviceStateError("the event log holds the maximum of unacknowledged "
                                   "operator events: send a signed `acknowledge` first")
        floor = max(self.remote.time_floor, command.issued or 0)
        spent = replace(self, remote=replace(self.remote, last_command=command.number,
                                             time_floor=floor))
        who = f"command {command.number} by operator key {shown(signer)}"
        try:
            state, message = _ACTIONS[command.action](spent, command, confirmed_failure)
        except DeviceStateError as exc:
            return CommandOutcome(spent.log(clock, "command-refused", command.action,
                                            f"{who}: {exc}"), str(exc), exc)
        return CommandOutcome(state.log(clock, "command", command.action, f"{who}: {message}"),
                              message)

    def install_policy(self, policy: PolicyRecord, regions: int, target: Target,
                       signer: bytes, ueid: bytes, now: int) -> SecureState:
        """Store a signed integrity policy whose operator signature verified."""
        self.check_target(target, ueid)
        last = self.policy.sequence if self.policy else 0
        if policy.sequence <= last:
            raise ReplayError(f"policy sequence {policy.sequence} is not above {last}, the "
                              "installed policy's")
        if not self.events.operator_room():
            raise DeviceStateError("the event log holds the maximum of unacknowledged "
                                   "operator events: send a signed `acknowledge` first")
        return replace(self, policy=policy).log(
            self.clock(now), "policy-installed", f"policy {policy.sequence}",
            f"{regions} regions, by operator key {shown(signer)}")

    def update_trust(self, update: TrustUpdate, signers: Sequence[bytes], ueid: bytes,
                     now: int) -> tuple[SecureState, str]:
        """Apply a trust update whose signatures by `signers` (key IDs) verified: target,
        version above the store's, each changed role signed by its current threshold
        (rotation.py), room in the log; the result must keep the confirmed image's signer
        and the quarantine's recovery anchor active. A trial whose signer it drops, or that
        was judged under a lower threshold than the update sets, is marked bad in the same
        write. Returns the new state and what it did."""
        self.check_target(update.target, ueid)
        if update.version <= self.trust.version:
            raise ReplayError(f"trust update version {update.version} is not above "
                              f"{self.trust.version}, the trust store's")
        authorize(self.trust, update, signers)
        trust = rotated(self.trust, update)
        boot = self.boot
        if trust.boot_anchor(boot.confirmed_image.signer) is None:
            raise DeviceStateError(
                f"key {shown(boot.confirmed_image.signer)} signed the confirmed image in slot "
                f"{boot.confirmed.value}: it may leave only once an image signed by a new "
                "anchor is confirmed (add the new anchor first; docs/after-attack.md)")
        quarantine = self.remote.quarantine
        if quarantine is not None and trust.active(Role.RECOVERY, quarantine) is None:
            raise DeviceStateError(f"recovery key {shown(quarantine)} holds the quarantine: "
                                   "release it first")
        if not self.events.operator_room():
            raise DeviceStateError("the event log holds the maximum of unacknowledged "
                                   "operator events: send a signed `acknowledge` first")
        roles = ", ".join(f"{r.role} {r.threshold} of {len(r.keys)}" for r in update.roles)
        message = f"trust store version {update.version}: {roles}"
        trial = boot.trial_image
        if trial is not None:
            assert boot.trial is not None
            why = _trial_outdated(self.trust, trust, trial)
            if why:
                message += f"; trial slot {boot.trial.value}, {why}, marked bad"
                boot = _reject(boot)
        by = ", ".join(shown(kid) for kid in dict.fromkeys(signers))
        state = replace(self, trust=trust, boot=boot)
        return state.log(now, "trust-updated", f"trust {update.version}",
                         f"{roles}; signed by {by}"), message

    # --- the event log ---------------------------------------------------------------------

    def log(self, now: int, kind: str, subject: str, detail: str) -> SecureState:
        return replace(self, events=self.events.append(self.clock(now), kind, subject, detail))


def check_kept(image: ImageRecord, confirmed: ImageRecord) -> None:
    """A set lists exactly the confirmed set's components, and each component its SFUI did not
    name (an older sequence) keeps exactly the facts the confirmed set recorded for it."""
    if image.components is None and confirmed.components is None:
        return
    if image.components is None or confirmed.components is None or [
            c.name for c in image.components] != [c.name for c in confirmed.components]:
        raise DeviceStateError("the image does not list the components of the confirmed set")
    for new, old in zip(image.components, confirmed.components, strict=True):
        if new.sequence != image.sequence and new != old:
            raise DeviceStateError(f"component {new.name} is neither installed by sequence "
                                   f"{image.sequence} nor the confirmed one kept")


def _trial_outdated(before: TrustStore, after: TrustStore, trial: ImageRecord) -> str:
    """Why a trial installed under the trust store `before` may not stay on trial under
    `after` ("" if it may): a signer is no longer a bootable anchor, or the firmware
    threshold rose. An image records one signer, so the signatures it carried cannot be
    counted again: it must be installed again and meet the new threshold."""
    if any(after.boot_anchor(signer) is None for signer in trial.signers()):
        return "signed by a dropped key"
    was, now = before.threshold(Role.FIRMWARE), after.threshold(Role.FIRMWARE)
    if now > was:
        return f"installed under a firmware threshold of {was}, now {now}"
    return ""


def _drop_agent_trial(agent: AgentRecord) -> AgentRecord:
    assert agent.trial is not None
    return replace(agent.with_bundle(agent.trial, None), trial=None, tried=False)


def _reject(boot: BootRecord) -> BootRecord:
    assert boot.trial is not None
    bad = SlotRecord(SlotStatus.BAD, boot.slot(boot.trial).image)
    return replace(boot.with_slot(boot.trial, bad), trial=None, tries_left=0,
                   trial_healthy=False)


# --- the actions of signed commands ------------------------------------------------------------
# Each takes the state with the command already spent and returns (new state, message), or
# raises DeviceStateError when the device's state does not allow it.


def _inspect(state: SecureState, command: RemoteCommand,
             confirmed_failure: str | None) -> tuple[SecureState, str]:
    return state, "attestation follows"


def _revert(state: SecureState, command: RemoteCommand,
            confirmed_failure: str | None) -> tuple[SecureState, str]:
    return state.revert(confirmed_failure)


def _quarantine(state: SecureState, command: RemoteCommand,
                confirmed_failure: str | None) -> tuple[SecureState, str]:
    kid = command.arguments["recovery_key_id"]
    if state.trust.active(Role.RECOVERY, kid) is None:
        raise DeviceStateError(f"key {shown(kid)} is not a provisioned recovery anchor")
    return (replace(state, remote=replace(state.remote, quarantine=kid)),
            f"quarantined: only images signed by recovery key {shown(kid)} are accepted "
            "until released")


def _release(state: SecureState, command: RemoteCommand,
             confirmed_failure: str | None) -> tuple[SecureState, str]:
    if state.remote.quarantine is None:
        raise DeviceStateError("the device is not quarantined")
    return (replace(state, remote=replace(state.remote, quarantine=None)),
            "released from quarantine: images signed by firmware anchors are accepted again")


def _revoke_key(state: SecureState, command: RemoteCommand,
                confirmed_failure: str | None) -> tuple[SecureState, str]:
    """Revoke a firmware anchor, by the facts recorded for each slot: refused if it signed the
    confirmed image (nothing would be left to boot) or is the last way to sign an update; a
    trial it signed is marked bad in the same write."""
    kid = command.arguments["key_id"]
    trust = state.trust
    if trust.active(Role.FIRMWARE, kid) is None:
        raise DeviceStateError(f"no active firmware anchor has key ID {shown(kid)} "
                               "(revoke-key revokes firmware-signing anchors only)")
    revoked = trust.revoke(Role.FIRMWARE, kid)
    if not revoked.keys(Role.FIRMWARE) and not revoked.keys(Role.RECOVERY):
        raise DeviceStateError("refusing to revoke the last firmware anchor: no recovery "
                               "anchor is provisioned, so the device could never be updated "
                               "again")
    short = revoked.short_of_threshold()
    if short:
        raise DeviceStateError(f"refusing to revoke key {shown(kid)}: {short[0]}; lower the "
                               "threshold with a signed trust update first")
    boot = state.boot
    if any(hmac.compare_digest(signer, kid) for signer in boot.confirmed_image.signers()):
        raise DeviceStateError(f"key {shown(kid)} signed the confirmed image in slot "
                               f"{boot.confirmed.value}: revoking it would leave nothing to "
                               "boot; install and confirm an image signed by another key "
                               "first")
    message = f"firmware key {shown(kid)} revoked (trust store version {revoked.version})"
    trial = boot.trial_image
    if trial is not None and any(hmac.compare_digest(signer, kid) for signer in trial.signers()):
        assert boot.trial is not None
        message += f"; trial slot {boot.trial.value}, signed by it, marked bad"
        boot = _reject(boot)
    return replace(state, trust=revoked, boot=boot), message


def _reboot(state: SecureState, command: RemoteCommand,
            confirmed_failure: str | None) -> tuple[SecureState, str]:
    return state, ("reboot requested (on the simulated board the next `sfu board boot` "
                   "performs it)")


def _acknowledge(state: SecureState, command: RemoteCommand,
                 confirmed_failure: str | None) -> tuple[SecureState, str]:
    through = command.arguments["through"]
    events = state.events.acknowledge(through)
    released = len(state.events.pinned) - len(events.pinned)
    return (replace(state, events=events),
            f"events up to {through} acknowledged ({released} released)")


_ACTIONS: Final = {
    "inspect": _inspect,
    "revert": _revert,
    "quarantine": _quarantine,
    "release": _release,
    "revoke-key": _revoke_key,
    "reboot": _reboot,
    "acknowledge": _acknowledge,
}


def _check_arguments(command: RemoteCommand) -> None:
    """Argument checks beyond the command schema (SchemaError: refused before spending)."""
    args = command.arguments
    if command.action == "inspect" and not MIN_NONCE <= len(args["nonce"]) <= MAX_NONCE:
        raise SchemaError(f"inspect needs a nonce of {MIN_NONCE} to {MAX_NONCE} bytes")
    for name in ("key_id", "recovery_key_id"):
        if name in args and len(args[name]) != 32:
            raise SchemaError(f"{command.action}: {name} must be a 32-byte key ID")

"""The only writer of secure storage: a thin I/O wrapper around `SecureState`'s transitions.

Every method is one legal transition: under the storage lock (which keeps other processes,
like the boot code, out) and a thread lock, it reads the whole state in ONE authenticated
read, applies a pure transition, checks the invariants of the new state and that nothing
monotonic went down, and writes the changed records in ONE atomic write. A power cut leaves
either the old or the new state. Signature checks of commands and policies happen here, with
the operator anchors of the state just read, so nothing the caller passes is trusted beyond
what a signature covers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sfupdate.errors import DeviceStateError, StorageIntegrityError, UnknownKeyError
from sfupdate.formats.remote import RemoteCommand, verify_command, verify_policy
from sfupdate.formats.remote.trust import verify_trust_update
from sfupdate.formats.sfui import TrustedKey
from sfupdate.secure.board.hal import SecureStorage, Slot
from sfupdate.secure.board.records import (
    RECORD_IDENTITY,
    RECORD_PAYLOAD_KEK,
    BundleRecord,
    DeviceInfo,
    ImageRecord,
    PolicyRecord,
    Role,
    TrustStore,
    initial_agent_record,
    initial_boot_record,
)
from sfupdate.secure.kernel.state import CommandOutcome, SecureState

T = TypeVar("T")


class Kernel:
    """Owns the board's secure storage. Construct one per process (or share one between
    threads); every method re-reads the state, so several kernels over one board agree."""

    def __init__(self, storage: SecureStorage) -> None:
        self._storage = storage
        self._lock = threading.RLock()

    # --- reading -------------------------------------------------------------------------

    def state(self) -> SecureState:
        """A consistent, verified snapshot of the whole secure state."""
        with self._lock:
            return SecureState.from_records(self._storage.read_all())

    def identity_key(self) -> ec.EllipticCurvePrivateKey:
        """The device identity key (P-256), created at provisioning."""
        der = self._storage.read(RECORD_IDENTITY)
        if der is None:
            raise DeviceStateError("the board has no identity key: it is not provisioned")
        try:
            key = serialization.load_der_private_key(der, password=None)
        except ValueError:
            raise StorageIntegrityError("the stored identity key is unreadable") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve,
                                                                             ec.SECP256R1):
            raise StorageIntegrityError("the stored identity key is not a P-256 key")
        return key

    def payload_kek(self) -> bytes | None:
        """The pre-shared A128KW key-encryption key for encrypted payloads, if provisioned."""
        kek = self._storage.read(RECORD_PAYLOAD_KEK)
        if kek is not None and len(kek) != 16:
            raise StorageIntegrityError("the stored payload key-encryption key is not 16 bytes")
        return kek

    # --- the machinery -------------------------------------------------------------------

    @contextmanager
    def _exclusive(self) -> Iterator[SecureState]:
        with self._lock, self._storage.lock():
            yield self.state()

    def _save(self, old: SecureState, new: SecureState) -> None:
        new.check()
        new.check_successor(old)
        changes = new.changed_records(old)
        if changes:
            self._storage.write(changes)

    def _apply(self, transition: Callable[[SecureState], tuple[SecureState, T]]) -> T:
        with self._exclusive() as old:
            new, result = transition(old)
            self._save(old, new)
            return result

    def _step(self, transition: Callable[[SecureState], SecureState]) -> SecureState:
        def run(old: SecureState) -> tuple[SecureState, SecureState]:
            new = transition(old)
            return new, new
        return self._apply(run)

    # --- provisioning ----------------------------------------------------------------------

    def initialise(self, device: DeviceInfo, trust: TrustStore, identity_der: bytes,
                   image: ImageRecord, bundle: BundleRecord,
                   payload_kek: bytes | None = None) -> None:
        """Provisioning: the first state, with `image` confirmed in slot A and the agent
        `bundle` confirmed in agent partition A, in one write (with the payload KEK, if
        given)."""
        with self._lock, self._storage.lock():
            if self._storage.read_all():
                raise DeviceStateError("secure storage is not empty: already provisioned")
            state = SecureState(device, trust, initial_boot_record(image),
                                initial_agent_record(bundle))
            state.check()
            secrets = {RECORD_IDENTITY: identity_der}
            if payload_kek is not None:
                secrets[RECORD_PAYLOAD_KEK] = payload_kek
            self._storage.write({**state.changed_records(None), **secrets})

    # --- install ---------------------------------------------------------------------------

    def begin_install(self) -> Slot:
        return self._apply(lambda s: s.begin_install())

    def record_trial(self, slot: Slot, image: ImageRecord,
                     signers: Sequence[bytes]) -> SecureState:
        return self._step(lambda s: s.record_trial(slot, image, signers))

    # --- the agent bundle --------------------------------------------------------------------

    def begin_agent_install(self) -> Slot:
        return self._apply(lambda s: s.begin_agent_install())

    def record_agent_trial(self, slot: Slot, bundle: BundleRecord) -> SecureState:
        return self._step(lambda s: s.record_agent_trial(slot, bundle))

    def choose_agent(self) -> tuple[SecureState, Slot]:
        def choose(s: SecureState) -> tuple[SecureState, tuple[SecureState, Slot]]:
            new, slot = s.choose_agent()
            return new, (new, slot)
        return self._apply(choose)

    def agent_trial_failed(self, slot: Slot) -> SecureState:
        return self._step(lambda s: s.agent_trial_failed(slot))

    def confirm_agent(self) -> SecureState:
        return self._step(lambda s: s.confirm_agent())

    # --- boot ------------------------------------------------------------------------------

    def measure_agent(self, digest: bytes) -> None:
        self._step(lambda s: s.measure_agent(digest))

    def start_boot(self) -> tuple[SecureState, Slot, bool]:
        """Persist the boot's choice (and a spent try) before the slot runs."""
        def choose(s: SecureState) -> tuple[SecureState, tuple[SecureState, Slot, bool]]:
            new, slot, trial = s.start_boot()
            return new, (new, slot, trial)
        return self._apply(choose)

    def booted(self, slot: Slot, manifest_digest: bytes, healthy: bool) -> SecureState:
        return self._step(lambda s: s.booted(slot, manifest_digest, healthy))

    def trial_failed(self, slot: Slot) -> SecureState:
        return self._step(lambda s: s.trial_failed(slot))

    # --- confirm, reject, revert -------------------------------------------------------------

    def confirm(self) -> SecureState:
        return self._step(lambda s: s.confirm())

    def reject_trial(self) -> SecureState:
        return self._step(lambda s: s.reject_trial())

    def record_integrity(self, now: int, findings: list[tuple[str, str]],
                         revert: Callable[[SecureState], str | None] | None,
                         expected: SecureState) -> tuple[SecureState, str | None]:
        """Log new integrity mismatches (name, detail); with `revert` (which re-verifies the
        confirmed slot of the state it is given: None if it verifies, else why not), also
        revert in the same write if that is safe and the boot state is still `expected`'s.
        Returns the new state and "reverted", "revert-refused" or None."""
        def record(s: SecureState) -> tuple[SecureState, tuple[SecureState, str | None]]:
            new = s
            for name, detail in findings:
                new = new.log(now, "integrity-mismatch", name, detail)
            outcome = None
            if revert is not None:
                try:
                    if s.boot != expected.boot:
                        raise DeviceStateError("the boot state changed during the check")
                    new, done = new.revert(revert(s))
                except DeviceStateError as exc:
                    new, outcome = new.log(now, "revert-refused", "integrity-policy",
                                           str(exc)), "revert-refused"
                else:
                    new, outcome = new.log(now, "revert", "integrity-policy", done), "reverted"
            return new, (new, outcome)
        return self._apply(record)

    # --- signed remote commands and policies -------------------------------------------------

    def execute(self, data: bytes, ueid: bytes, now: int,
                confirmed_check: Callable[[SecureState], str | None]
                ) -> tuple[RemoteCommand, CommandOutcome]:
        """Verify a signed command with the stored operator anchors and spend it (see
        SecureState.execute). A refusal for the device's state is saved, then raised."""
        def run(s: SecureState) -> tuple[SecureState, tuple[RemoteCommand, CommandOutcome]]:
            command, signer = verify_command(data, _operators(s.trust))
            failure = confirmed_check(s) if command.action == "revert" else None
            outcome = s.execute(command, signer.kid, ueid, now, failure)
            return outcome.state, (command, outcome)
        command, outcome = self._apply(run)
        if outcome.refused is not None:
            raise outcome.refused
        return command, outcome

    def install_policy(self, data: bytes, ueid: bytes, now: int) -> tuple[int, int]:
        """Verify and store a signed integrity policy; returns (sequence, region count)."""
        def run(s: SecureState) -> tuple[SecureState, tuple[int, int]]:
            policy, signer, body = verify_policy(data, _operators(s.trust))
            new = s.install_policy(PolicyRecord(policy.sequence, body), len(policy.regions),
                                   policy.target, signer.kid, ueid, now)
            return new, (policy.sequence, len(policy.regions))
        return self._apply(run)

    def update_trust(self, data: bytes, ueid: bytes, now: int) -> tuple[int, str]:
        """Verify a signed trust update with every active anchor of the state just read and
        apply it (SecureState.update_trust) in one write; returns (new version, message)."""
        def run(s: SecureState) -> tuple[SecureState, tuple[int, str]]:
            anchors = [a.key for a in s.trust.anchors if not a.revoked]
            update, signers = verify_trust_update(data, anchors)
            new, message = s.update_trust(update, [k.kid for k in signers], ueid, now)
            return new, (update.version, message)
        return self._apply(run)


def _operators(trust: TrustStore) -> list[TrustedKey]:
    keys = trust.keys(Role.OPERATOR)
    if not keys:
        raise UnknownKeyError("this device trusts no operator key: it accepts no signed "
                              "remote command or policy")
    return keys


"""A hostile Rich OS, at random, against the real kernel on the sim board (in process).

Hypothesis drives random sequences of what the Rich OS can do — install any image of a pool
(authentic, older, newer, failing its health check, signed by a revoked, a recovery or an
unknown key, for another class, by one key or two), confirm, reject, check, attest, carry
signed commands (fresh, replayed or stale numbers; signed by the operator or by a key of
another role) and signed trust updates (new firmware and recovery anchors and thresholds;
signed by enough, too few or the wrong keys; fresh, replayed or skipping versions), hide, swap,
plant and corrupt slot headers and slot bytes, write old authentic images into slots, put an
old copy of secure storage back — interleaved with power cuts at any write of an install, a
boot, a confirm, a reject, a command or a trust update, and reboots. After every step it
checks:

* secure storage still verifies, and its state satisfies the kernel's invariants;
* the rollback floor, the command number, the time floor and the trust version never go
  down, and a revoked anchor stays revoked;
* a trial stays on trial only while every key that signed it is a bootable anchor and the
  firmware threshold is no higher than when it was installed;
* the confirmed image is one that booted healthy as a trial (or the provisioned one);
* the confirmed slot, unless the Rich OS has altered its bytes, verifies with its recorded
  signer (still an active anchor: no command bricked the device) at or above the floor, so
  the next boot runs an authentic image at or above the floor;
* every operator command spent and not acknowledged is still pinned in the event log.

At least SFU_STATE_STEPS steps (default 10,000) run in batches of random programs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from sfupdate import keys
from sfupdate.errors import SfuError, StorageIntegrityError
from sfupdate.formats.remote import RemoteCommand, Target, sign_command, ueid_for
from sfupdate.formats.remote.trust import TrustUpdate, sign_trust_update
from sfupdate.formats.sfui import TrustedKey, class_uuid
from sfupdate.keys.files import FileSigner
from sfupdate.secure.agent.actions import RemoteActions
from sfupdate.secure.agent.attest import attest
from sfupdate.secure.agent.confirm import confirm_intact
from sfupdate.secure.agent.device import Device
from sfupdate.secure.agent.install import install
from sfupdate.secure.agent.integrity import IntegrityMonitor
from sfupdate.secure.board.hal import Slot
from sfupdate.secure.board.power import Power, PowerCut
from sfupdate.secure.board.records import Role
from sfupdate.secure.board.sim import SimBoard, open_board
from sfupdate.secure.kernel import Kernel
from sfupdate.secure.kernel.verify import HEALTH_FAIL_MARKER, verify_slot
from tests.device_world import auth_wrapper, envelope, manifest
from tests.thresholds.conftest import role as role_keys
from tests.world import SMALL_SLOT_SIZE, VENDOR, fresh, provision_board, reboot

STEPS = int(os.environ.get("SFU_STATE_STEPS", "10000"))
STEPS_PER_PROGRAM = 40
#: The boards live in memory when the machine has a tmpfs: the fsyncs then cost nothing, and
#: the power-cut model (sfupdate.secure.board.power) decides what a cut loses, not the disk.
_FAST_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) \
    else None
NONCE = b"state-machine-nonce"


def _signer() -> FileSigner:
    return FileSigner(keys.generate_private_key("ES256"))


@dataclass(frozen=True)
class Image:
    data: bytes
    payload: bytes

    @property
    def header(self) -> bytes:
        return self.data[:len(self.data) - len(self.payload)]


@dataclass(frozen=True)
class World:
    template: Path
    images: dict[str, Image]
    firmware: FileSigner
    second: FileSigner
    third: FileSigner  # no anchor at first: a trust update may make it one
    operator: FileSigner
    recovery: FileSigner
    ueid_target: Target

    def signer(self, name: str) -> FileSigner:
        signer: FileSigner = getattr(self, name)
        return signer


def _payload(name: str, size: int, failing: bool = False) -> bytes:
    body = (f"{name} ".encode() * (size // (len(name) + 1) + 1))[:size]
    return body + HEALTH_FAIL_MARKER if failing else body


#: Firmware anchors a trust update may give (names of World's signers) and the threshold.
FIRMWARE_ANCHORS: dict[str, tuple[tuple[str, ...], int]] = {
    "firmware+second 1": (("firmware", "second"), 1),
    "firmware+second 2": (("firmware", "second"), 2),
    "firmware+second+third 2": (("firmware", "second", "third"), 2),
    "firmware+third 1": (("firmware", "third"), 1),
    "second+third 1": (("second", "third"), 1),
    "third 1": (("third",), 1),
}
#: Who signs a trust update: enough firmware anchors, too few, the wrong role, a stranger.
TRUST_SIGNERS = [("firmware",), ("second",), ("firmware", "second"), ("third",),
                 ("second", "third"), ("operator",), ("recovery",),
                 ("firmware", "second", "third")]


def _build_world(root: Path) -> World:
    firmware, second, third, operator, recovery, stranger = (_signer() for _ in range(6))
    images: dict[str, Image] = {}

    def add(name: str, sequence: int, *signers: FileSigner, failing: bool = False,
            klass: str = "demo-board") -> None:
        payload = _payload(name, 2048 + 256 * sequence, failing)
        signed = manifest(sequence, payload, klass=class_uuid(VENDOR, klass))
        data = envelope(signed, payload, None, auth=auth_wrapper(signed, *signers))
        images[name] = Image(data, payload)

    for n in range(1, 9):
        add(f"v{n}", n, firmware)
        add(f"w{n}", n, second)  # the second firmware key (revocable)
    for n in (3, 5, 7):
        add(f"fail{n}", n, firmware, failing=True)
        add(f"rec{n}", n, recovery)
    for n in (4, 6, 8):
        add(f"t{n}", n, third)  # trusted only once a trust update names it
        add(f"vw{n}", n, firmware, second)  # meets a firmware threshold of 2
    add("stranger6", 6, stranger)
    add("otherclass6", 6, firmware, klass="other-board")
    first = root / "v1.sfui"
    first.write_bytes(images["v1"].data)
    board_dir = root / "board"
    provision_board(board_dir, first,
                    [TrustedKey(firmware.public_key), TrustedKey(second.public_key)],
                    operators=[TrustedKey(operator.public_key)],
                    recovery=[TrustedKey(recovery.public_key)], slot_size=SMALL_SLOT_SIZE)
    ueid = ueid_for(Kernel(fresh(board_dir).storage).identity_key().public_key())
    reboot(board_dir)
    return World(board_dir, images, firmware, second, third, operator, recovery,
                 Target(ueid=ueid))


_WORLD: World | None = None
_STEPS_RUN = 0


class HostileRichOS(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        assert _WORLD is not None
        self.world = _WORLD
        self.tmp = Path(tempfile.mkdtemp(prefix="sfu-state-", dir=_FAST_DIR))
        self.root = self.tmp / "board"
        shutil.copytree(self.world.template, self.root)
        state = self.kernel().state()
        self.floor = state.boot.floor
        self.last_command = 0
        self.time_floor = 0
        self.healthy = {state.boot.confirmed_image.digest}  # digests that booted healthy
        self.genuine: dict[Slot, tuple[bytes, bytes, bytes]] = {}  # slot -> digest, hdr, img
        image = self.world.images["v1"]
        self.genuine[Slot.A] = (hashlib.sha256(image.payload).digest(), image.header,
                                image.payload)
        self.pinned_commands: dict[int, int] = {}  # event number -> command number
        self.trust_version = state.trust.version
        self.revoked: set[tuple[Role, bytes]] = set()  # anchors seen revoked
        self.trial_installed_under: tuple[Slot, bytes, int] | None = None  # slot, digest, k
        self.saved_storage: Path | None = None
        self.clock = int(time.time())

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- plumbing --------------------------------------------------------------------------

    def board(self, cut: int | None = None) -> SimBoard:
        return open_board(self.root, Power(cut))

    def kernel(self) -> Kernel:
        return Kernel(self.board().storage)

    def _step(self) -> None:
        global _STEPS_RUN
        _STEPS_RUN += 1

    # --- what the Rich OS asks of the agent ------------------------------------------------

    @rule(name=st.sampled_from(sorted(["v2", "v3", "v4", "v5", "v6", "v7", "v8", "w3", "w5",
                                       "w7", "fail3", "fail5", "fail7", "rec3", "rec5",
                                       "rec7", "stranger6", "otherclass6", "v1", "t4",
                                       "t6", "t8", "vw4", "vw6", "vw8"])),
          cut=st.one_of(st.none(), st.integers(1, 12)))
    def install(self, name: str, cut: int | None) -> None:
        self._step()
        image = self.world.images[name]
        board = self.board(cut)
        threshold = self.kernel().state().trust.threshold(Role.FIRMWARE)
        try:
            done = install(Device(board), io.BytesIO(image.data))
        except (SfuError, PowerCut):
            return
        finally:
            boot_record = self.kernel().state().boot
            trial = boot_record.trial_image
            if trial is not None and boot_record.trial is not None and \
                    trial.digest == hashlib.sha256(image.payload).digest():
                self.trial_installed_under = (boot_record.trial, trial.digest, threshold)
        self.genuine[done.slot] = (done.digest, image.header, image.payload)

    @rule(cut=st.one_of(st.none(), st.integers(1, 8)))
    def reboot(self, cut: int | None) -> None:
        self._step()
        try:
            result = reboot(self.board(cut))
        except (SfuError, PowerCut):
            return
        if result.trial and result.healthy:
            image = self.kernel().state().boot.slot(Slot(result.slot)).image
            assert image is not None
            self.healthy.add(image.digest)

    @rule(cut=st.one_of(st.none(), st.integers(1, 3)))
    def confirm(self, cut: int | None) -> None:
        """The device's confirm (agent/confirm.py): the trial's slot measured again first."""
        self._step()
        board = self.board(cut)
        with contextlib.suppress(SfuError, PowerCut):
            confirm_intact(board, Kernel(board.storage))

    @rule(cut=st.one_of(st.none(), st.integers(1, 3)))
    def reject(self, cut: int | None) -> None:
        self._step()
        with contextlib.suppress(SfuError, PowerCut):
            Kernel(self.board(cut).storage).reject_trial()

    @rule()
    def check(self) -> None:
        self._step()
        device = Device(self.board())
        with contextlib.suppress(SfuError):
            IntegrityMonitor(device, lambda: self.clock).check()

    @rule()
    def attest(self) -> None:
        self._step()
        with contextlib.suppress(SfuError):
            attest(Device(self.board()), NONCE, (), self.clock)

    @rule(action=st.sampled_from(["reboot", "revert", "quarantine", "release", "revoke-first",
                                  "revoke-second", "acknowledge", "inspect"]),
          number=st.sampled_from(["next", "next", "next", "replay", "jump"]),
          signer=st.sampled_from(["operator", "operator", "operator", "firmware"]),
          expired=st.booleans(),
          cut=st.one_of(st.none(), st.integers(1, 4)))
    def command(self, action: str, number: str, signer: str, expired: bool,
                cut: int | None) -> None:
        self._step()
        world = self.world
        n = {"next": self.last_command + 1, "replay": max(self.last_command, 1),
             "jump": self.last_command + 7}[number]
        arguments: dict[str, object] = {}
        name = action
        if action == "quarantine":
            arguments["recovery_key_id"] = world.recovery.kid
        elif action.startswith("revoke"):
            name = "revoke-key"
            key = world.firmware if action == "revoke-first" else world.second
            arguments["key_id"] = key.kid
        elif action == "acknowledge":
            arguments["through"] = self.kernel().state().events.total
        elif action == "inspect":
            arguments["nonce"] = NONCE
        self.clock += 10
        expires = self.clock - 5 if expired else self.clock + 600
        key = world.operator if signer == "operator" else world.firmware
        data = sign_command(RemoteCommand(world.ueid_target, n, name, arguments, expires,
                                          issued=self.clock - 1), key)
        device = Device(self.board(cut))
        actions = RemoteActions(device, IntegrityMonitor(device, lambda: self.clock),
                                lambda: self.clock)
        with contextlib.suppress(SfuError, PowerCut):
            actions.execute(data)
        state = self.kernel().state()
        if state.remote.last_command == n and n > self.last_command:  # spent
            mine = [e for e in state.events.events
                    if e.detail.startswith(f"command {n} by")]
            assert mine, f"command {n} was spent without an event"
            self.pinned_commands[mine[-1].number] = n

    @rule(firmware=st.sampled_from(sorted(FIRMWARE_ANCHORS)),
          recovery=st.sampled_from(["unchanged", "recovery", "recovery+third", "third"]),
          by=st.sampled_from(TRUST_SIGNERS),
          version=st.sampled_from(["next", "next", "next", "replay", "jump"]),
          cut=st.one_of(st.none(), st.integers(1, 9)))
    def trust_update(self, firmware: str, recovery: str, by: tuple[str, ...], version: str,
                     cut: int | None) -> None:
        """A trust update the Rich OS carries: any anchors, any threshold, signed by any
        keys; the kernel alone decides whether enough of the right ones signed."""
        self._step()
        world = self.world
        before = self.kernel().state().trust
        current = before.version
        number = {"next": current + 1, "replay": current, "jump": current + 5}[version]
        names, threshold = FIRMWARE_ANCHORS[firmware]
        roles = [role_keys("firmware", threshold, *(world.signer(n) for n in names))]
        if recovery != "unchanged":
            roles.append(role_keys("recovery", 1,
                                   *(world.signer(n) for n in recovery.split("+"))))
        data = sign_trust_update(TrustUpdate(world.ueid_target, number, tuple(roles)),
                                 [world.signer(n) for n in by])
        ueid = world.ueid_target.ueid
        assert ueid is not None
        with contextlib.suppress(SfuError, PowerCut):
            Device(self.board(cut)).kernel.update_trust(data, ueid, self.clock)
        after = self.kernel().state().trust
        kids = [world.signer(n).kid for n in by]
        for role in (Role.FIRMWARE, Role.RECOVERY):
            if ({k.kid for k in after.keys(role)}, after.threshold(role)) != (
                    {k.kid for k in before.keys(role)}, before.threshold(role)):
                authority = role if before.keys(role) else Role.OPERATOR
                assert before.count_signers(authority, kids) >= before.threshold(authority), \
                    f"the {role.value} anchors changed without their threshold's signatures"

    # --- what the Rich OS does to what it can reach ----------------------------------------

    @rule(slot=st.sampled_from(list(Slot)), offset=st.integers(0, 4000))
    def flip_slot_byte(self, slot: Slot, offset: int) -> None:
        self._step()
        path = self.root / "slots" / f"{slot.value}.img"
        with path.open("r+b") as f:
            f.seek(offset)
            byte = f.read(1)
            f.seek(offset)
            f.write(bytes([byte[0] ^ 0x20]))

    @rule(slot=st.sampled_from(list(Slot)), offset=st.integers(0, 300))
    def flip_header_byte(self, slot: Slot, offset: int) -> None:
        self._step()
        path = self.root / "slots" / f"{slot.value}.hdr"
        if path.exists():
            data = bytearray(path.read_bytes())
            data[offset % len(data)] ^= 0x01
            path.write_bytes(bytes(data))

    @rule(slot=st.sampled_from(list(Slot)))
    def hide_header(self, slot: Slot) -> None:
        self._step()
        (self.root / "slots" / f"{slot.value}.hdr").unlink(missing_ok=True)

    @rule()
    def swap_headers(self) -> None:
        self._step()
        a, b = (self.root / "slots" / f"{s.value}.hdr" for s in Slot)
        if a.exists() and b.exists():
            data_a, data_b = a.read_bytes(), b.read_bytes()
            a.write_bytes(data_b)
            b.write_bytes(data_a)

    @rule(slot=st.sampled_from(list(Slot)),
          name=st.sampled_from(["v1", "v2", "w3", "rec5", "stranger6", "v8"]))
    def write_an_image_into_a_slot(self, slot: Slot, name: str) -> None:
        """Any authentic (old or new) or unauthentic image, written straight to slot storage."""
        self._step()
        image = self.world.images[name]
        with (self.root / "slots" / f"{slot.value}.img").open("r+b") as f:
            f.write(image.payload)
        (self.root / "slots" / f"{slot.value}.hdr").write_bytes(image.header)

    @rule(slot=st.sampled_from(list(Slot)))
    def repair_slot(self, slot: Slot) -> None:
        """Put back what the agent wrote (the attacker gives up, or a technician repairs)."""
        self._step()
        if slot in self.genuine:
            _, header, payload = self.genuine[slot]
            with (self.root / "slots" / f"{slot.value}.img").open("r+b") as f:
                f.write(payload)
            (self.root / "slots" / f"{slot.value}.hdr").write_bytes(header)

    @rule()
    def copy_secure_storage(self) -> None:
        self._step()
        saved = self.tmp / "saved-secure"
        shutil.rmtree(saved, ignore_errors=True)
        shutil.copytree(self.root / "secure", saved)
        self.saved_storage = saved

    @rule()
    def put_back_an_old_secure_storage(self) -> None:
        """Restore an older copy (renamed to the file the counter names): detected, every
        read refuses; then the current copy comes back (the attack gained nothing)."""
        self._step()
        if self.saved_storage is None:
            return
        current = self.tmp / "current-secure"
        shutil.rmtree(current, ignore_errors=True)
        shutil.copytree(self.root / "secure", current)
        counter = self.board().storage.write_counter
        older = sorted(p for p in self.saved_storage.glob("store-*")
                       if p.name != f"store-{counter}")
        if not older:
            return  # nothing was written since the copy: it IS the current storage
        old = older[0]
        shutil.rmtree(self.root / "secure")
        (self.root / "secure").mkdir()
        shutil.copy(old, self.root / "secure" / f"store-{counter}")
        with pytest.raises(StorageIntegrityError):
            self.kernel().state()
        with pytest.raises(StorageIntegrityError):
            install(Device(self.board()), io.BytesIO(self.world.images["v8"].data))
        shutil.rmtree(self.root / "secure")
        shutil.copytree(current, self.root / "secure")

    # --- what must hold after every step ---------------------------------------------------

    @invariant()
    def secure_state_holds(self) -> None:
        board = self.board()
        state = Kernel(board.storage).state()  # verifies storage and the state's invariants
        boot_record = state.boot
        assert boot_record.floor >= self.floor, "the rollback floor went down"
        assert state.remote.last_command >= self.last_command, "the command number went down"
        assert state.remote.time_floor >= self.time_floor, "the time floor went down"
        trust = state.trust
        assert trust.version >= self.trust_version, "the trust version went down"
        self.trust_version = trust.version
        now_revoked = {(a.role, a.spki) for a in trust.anchors if a.revoked}
        assert self.revoked <= now_revoked, "a revoked anchor came back"
        self.revoked = now_revoked
        trial = boot_record.trial_image
        if trial is not None:
            assert all(trust.boot_anchor(kid) for kid in trial.signers()), \
                "a trial signed by a key that is no longer an anchor stayed on trial"
            installed = self.trial_installed_under
            if installed is not None and installed[:2] == (boot_record.trial, trial.digest):
                assert trust.threshold(Role.FIRMWARE) <= installed[2], \
                    "a trial installed under a lower firmware threshold stayed on trial"
        self.floor, self.last_command = boot_record.floor, state.remote.last_command
        self.time_floor = state.remote.time_floor
        confirmed = boot_record.confirmed_image
        assert confirmed.digest in self.healthy, "confirmed an image that never booted healthy"
        keys_now = state.signer_keys(confirmed)
        assert keys_now, "the confirmed image's signer is no longer trusted: bricked"
        digest, header, payload = self.genuine[boot_record.confirmed]
        assert digest == confirmed.digest
        slot_path = self.root / "slots" / f"{boot_record.confirmed.value}.img"
        header_path = self.root / "slots" / f"{boot_record.confirmed.value}.hdr"
        intact = (header_path.exists() and header_path.read_bytes() == header
                  and slot_path.read_bytes()[:len(payload)] == payload)
        if intact:
            verify_slot(board, boot_record.confirmed, confirmed, keys_now, state.device,
                        boot_record.floor)
            assert confirmed.sequence >= boot_record.floor
        for event_number, command_number in self.pinned_commands.items():
            if event_number > state.events.acknowledged:
                kept = [e for e in state.events.pinned if e.number == event_number]
                assert kept, f"the event of command {command_number} left the log"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return _build_world(tmp_path_factory.mktemp("state-machine"))


@pytest.mark.timeout(max(300, STEPS // 20))  # about 5 ms a step here; room for a busy machine
def test_a_hostile_rich_os_never_breaks_the_kernels_promises(world: World) -> None:
    global _WORLD, _STEPS_RUN
    _WORLD, _STEPS_RUN = world, 0
    batch = settings(max_examples=max(1, STEPS // (STEPS_PER_PROGRAM * 4)),
                     stateful_step_count=STEPS_PER_PROGRAM, deadline=None, database=None,
                     suppress_health_check=list(HealthCheck))
    while _STEPS_RUN < STEPS:
        run_state_machine_as_test(HostileRichOS, settings=batch)
    print(f"\n[state machine] {_STEPS_RUN} steps of a hostile Rich OS, power cuts included; "
          "every invariant held after each")

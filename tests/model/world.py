"""The real code in the model's vocabulary: a provisioned sim board with the model's keys and
images, the operations of model/ops.pml run on it in process (the agent's install, stage 2's
boot_firmware, the Kernel's confirm/reject/execute, writes to slot storage), power cut at
the model's events, and the abstraction function from the board to the model's state.

Keys: F1, F2 (firmware anchors), REC (the recovery anchor), X (no anchor), the operator.
Images: IMG(v, s, h) = v*8 + s*2 + h for versions 1..NV, signers F1 F2 REC X, healthy or not.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sfupdate import keys
from sfupdate.errors import SfuError
from sfupdate.formats.remote import RemoteCommand, Target, sign_command, ueid_for
from sfupdate.formats.sfui import TrustedKey
from sfupdate.keys.files import FileSigner
from sfupdate.secure.agent.device import Device
from sfupdate.secure.agent.install import install
from sfupdate.secure.agent.measure import confirmed_failure
from sfupdate.secure.board.hal import Slot
from sfupdate.secure.board.power import PowerCut
from sfupdate.secure.board.records import Role, SlotStatus
from sfupdate.secure.board.sim import SimBoard, open_board
from sfupdate.secure.boot.stage2 import boot_firmware
from sfupdate.secure.kernel import Kernel, SecureState
from sfupdate.secure.kernel.verify import HEALTH_FAIL_MARKER
from tests.device_world import envelope, manifest
from tests.model.cuts import CutBoard
from tests.model.spin import TRACE_NV as NV
from tests.world import provision_board

F1, F2, REC, X = range(4)
OP_INSTALL, OP_BOOT, OP_CONFIRM, OP_REJECT, OP_COMMAND, OP_TAMPER = range(1, 7)
A_NOP, A_REVERT, A_QUAR, A_RELEASE, A_REVOKE_F1, A_REVOKE_F2, A_ACK = range(7)
OK, REFUSED, CUT, HALT = range(4)
GARBAGE = 0
NONE = 2
STATUS = {SlotStatus.EMPTY: 0, SlotStatus.INVALID: 1, SlotStatus.TRIAL: 2,
          SlotStatus.CONFIRMED: 3, SlotStatus.SUPERSEDED: 4, SlotStatus.BAD: 5}
SLOT_SIZE = 64 * 1024
_FAST_DIR = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def img(v: int, s: int, h: int) -> int:
    return v * 8 + s * 2 + h


FIRST = img(1, F1, 1)
IMAGES = [img(v, s, h) for v in range(1, NV + 1) for s in (F1, F2, REC, X) for h in (0, 1)]


@dataclass(frozen=True)
class Image:
    header: bytes
    payload: bytes

    @property
    def data(self) -> bytes:
        return self.header + self.payload


def _payload(i: int) -> bytes:
    name = f"image v{i // 8} signer {(i // 2) % 4} healthy {i % 2} "
    body = (name.encode() * (2048 // len(name) + 1 + i))[:2048 + 64 * i]
    return body if i % 2 else body + HEALTH_FAIL_MARKER


class World:
    """Keys, images and a provisioned template board; `fresh()` copies it for one walk."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.signers = [FileSigner(keys.generate_private_key("ES256"))
                        for _ in range(5)]
        self.operator = self.signers[4]
        self.kids = [s.kid for s in self.signers[:4]]
        self.images: dict[int, Image] = {}
        for i in IMAGES:
            payload = _payload(i)
            data = envelope(manifest(i // 8, payload), payload, self.signers[(i // 2) % 4])
            self.images[i] = Image(data[:len(data) - len(payload)], payload)
        self.by_digest = {hashlib.sha256(im.payload).digest(): i
                          for i, im in self.images.items()}
        first = root / "first.sfui"
        first.write_bytes(self.images[FIRST].data)
        self.template = root / "template"
        trusted = [TrustedKey(self.signers[k].public_key) for k in (F1, F2)]
        provision_board(self.template, first, trusted, slot_size=SLOT_SIZE,
                        operators=[TrustedKey(self.operator.public_key)],
                        recovery=[TrustedKey(self.signers[REC].public_key)])
        identity = Kernel(open_board(self.template).storage).identity_key()
        self.target = Target(ueid=ueid_for(identity.public_key()))

    def fresh(self) -> ModelBoard:
        return ModelBoard(self, Path(tempfile.mkdtemp(prefix="sfu-model-", dir=_FAST_DIR)))


class ModelBoard:
    """One board of the world: runs model operations and abstracts its state."""

    def __init__(self, world: World, tmp: Path) -> None:
        self.world = world
        self.tmp = tmp
        self.root = tmp / "board"
        shutil.copytree(world.template, self.root)
        self.clock = 1_700_000_000

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def board(self) -> SimBoard:
        return open_board(self.root)

    def state(self) -> SecureState:
        return Kernel(self.board().storage).state()

    # --- the operations ------------------------------------------------------------------

    def run(self, op: int, a1: int, a2: int, a3: int, cut: int) -> int:
        """One model operation on the real code; its result (OK, REFUSED, CUT, HALT)."""
        if op == OP_TAMPER:
            self._tamper(Slot.A if a1 == 0 else Slot.B, a2)
            return OK
        if op == OP_BOOT:  # the boot ROM's new measured boot (not one of the model's events)
            Kernel(self.board().storage).measure_agent(hashlib.sha256(b"agent").digest())
        board = CutBoard(self.board(), cut)
        try:
            if op == OP_INSTALL:
                install(Device(board), io.BytesIO(self.world.images[a1].data))
            elif op == OP_BOOT:
                boot_firmware(board)
            elif op == OP_CONFIRM:
                Kernel(board.storage).confirm()
            elif op == OP_REJECT:
                Kernel(board.storage).reject_trial()
            elif op == OP_COMMAND:
                data = self._command(a1, a2, a3)
                Kernel(board.storage).execute(
                    data, self.world.target.ueid or b"", self.clock,
                    lambda s: confirmed_failure(board, s))
            else:
                raise AssertionError(f"unknown operation {op}")
        except PowerCut:
            return CUT
        except SfuError:
            return HALT if op == OP_BOOT else REFUSED
        return OK

    def _command(self, action: int, auth: int, number: int) -> bytes:
        names = {A_NOP: "reboot", A_REVERT: "revert", A_QUAR: "quarantine",
                 A_RELEASE: "release", A_REVOKE_F1: "revoke-key", A_REVOKE_F2: "revoke-key",
                 A_ACK: "acknowledge"}
        arguments: dict[str, object] = {}
        if action == A_QUAR:
            arguments["recovery_key_id"] = self.world.kids[REC]
        elif action in (A_REVOKE_F1, A_REVOKE_F2):
            arguments["key_id"] = self.world.kids[F1 if action == A_REVOKE_F1 else F2]
        elif action == A_ACK:
            arguments["through"] = self.state().events.total
        self.clock += 10
        expires = self.clock - 5 if auth == 2 else self.clock + 600
        signer = self.world.operator if auth else self.world.signers[F1]  # F1: wrong role
        command = RemoteCommand(self.world.target, number, names[action], arguments, expires,
                                issued=self.clock - 1)
        return sign_command(command, signer)

    def _tamper(self, slot: Slot, image: int) -> None:
        slots = self.root / "slots"
        with (slots / f"{slot.value}.img").open("r+b") as f:
            f.write(b"\xa5" * 512 if image == GARBAGE else self.world.images[image].payload)
        header = slots / f"{slot.value}.hdr"
        if image == GARBAGE:
            header.unlink(missing_ok=True)
        else:
            header.write_bytes(self.world.images[image].header)

    # --- the abstraction function ----------------------------------------------------------

    def content(self, slot: Slot) -> int:
        """The image in slot storage (header and bytes), or GARBAGE."""
        header = self.board().slots.header(slot)
        data = (self.root / "slots" / f"{slot.value}.img").read_bytes()
        for i, image in self.world.images.items():
            if header == image.header and data.startswith(image.payload):
                return i
        return GARBAGE

    def abstract(self, state: SecureState | None = None) -> tuple[int, ...]:
        """st0 st1 rec0 rec1 con0 con1 conf trial tries floor booted th rvk quar last pins
        (of `state`, the board's current secure state, if given)."""
        state = self.state() if state is None else state
        boot = state.boot
        recs = []
        for slot in Slot:
            image = boot.slot(slot).image
            if image is None:
                recs.append(0)
                continue
            i = self.world.by_digest[image.digest]
            assert (image.sequence, image.signer) == (i // 8, self.world.kids[(i // 2) % 4])
            recs.append(i)
        trust = state.trust
        rvk = sum(1 << k for k in (F1, F2)
                  if trust.active(Role.FIRMWARE, self.world.kids[k]) is None)
        quarantine = state.remote.quarantine
        assert quarantine in (None, self.world.kids[REC])

        def index(slot: Slot | None) -> int:
            return NONE if slot is None else (0 if slot is Slot.A else 1)

        return (STATUS[boot.slots[0].status], STATUS[boot.slots[1].status], *recs,
                self.content(Slot.A), self.content(Slot.B), index(boot.confirmed),
                index(boot.trial), boot.tries_left, boot.floor, index(boot.booted),
                int(boot.trial_healthy), rvk, int(quarantine is not None),
                state.remote.last_command, len(state.events.pinned))

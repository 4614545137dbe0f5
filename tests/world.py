"""The one test world: the device every suite builds on, and the few ways to act on it.

* constants: the vendor and class every test device belongs to, slot sizes, firmware bytes;
* `fresh(path, cut_at)`: open a sim board as a new "process" would (its own power counter,
  a cut armed at write N);
* `reboot(board)`: a boot in this process — the ROM verifies and measures the agent bundle,
  stage 2 selects, verifies, measures and health-checks a slot through the kernel (the CLI
  tests run the real stage-2 subprocess from the verified zipapp);
* `encrypted_sfui(...)`: an SFUI encrypted for devices' public encryption keys;
* `provision_board(...)`: a blank sim board provisioned with v1 and the given anchors (its
  identity and encryption public keys exported).

The real-process mode (an `sfu agent serve` process on a real socket) is
`tests.agent.support.start_agent`; `tests.device_world.DeviceWorld` wraps both modes for the
attack suite.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from sfupdate.authoring.author import ImageSpec, sign_firmware
from sfupdate.authoring.author.bundle import build_agent_bundle, one_time_agent_bundle
from sfupdate.authoring.author.encrypt import PayloadEncryption
from sfupdate.formats.sfui import TrustedKey, class_uuid, vendor_uuid
from sfupdate.keys.files import FileSigner
from sfupdate.secure.board.power import Power
from sfupdate.secure.board.sim import SimBoard, create_board, open_board
from sfupdate.secure.boot.provision import Provisioned, provision
from sfupdate.secure.boot.rom import boot
from sfupdate.secure.boot.stage2 import BootResult, boot_firmware

VENDOR_NAME = "example.com"
CLASS_NAME = "demo-board"
VENDOR = vendor_uuid(VENDOR_NAME)
CLASS = class_uuid(VENDOR, CLASS_NAME)
#: Slots of the agent-process suites; the in-process sweeps use SMALL_SLOT_SIZE.
SLOT_SIZE = 256 * 1024
SMALL_SLOT_SIZE = 64 * 1024
FIRMWARE_V1 = b"firmware v1 " * 1000
FIRMWARE_V2 = b"firmware v2 " * 1200


def fresh(path: Path, cut_at: int | None = None) -> SimBoard:
    """The board at `path`, opened afresh (power cut armed at write `cut_at`, if given)."""
    return open_board(path, Power(cut_at))


def reboot(board: SimBoard | Path) -> BootResult:
    """A boot of `board` in this process: the ROM, then stage 2."""
    if isinstance(board, Path):
        board = fresh(board)
    opened = board
    return boot(opened, lambda _bundle: boot_firmware(opened))


def provision_board(root: Path, firmware: Path, trusted: Sequence[TrustedKey], *,
                    operators: Sequence[TrustedKey] = (), recovery: Sequence[TrustedKey] = (),
                    slot_size: int = SLOT_SIZE,
                    agent_signer: FileSigner | None = None,
                    payload_kek: bytes | None = None,
                    components: Sequence[tuple[str, int]] | None = None) -> Provisioned:
    """A blank board at `root` (of those components, else one of `slot_size`), provisioned
    for VENDOR_NAME/CLASS_NAME with the SFUI `firmware` (sequence 1 confirmed in slot A); the
    identity public key is exported."""
    board = create_board(root, slot_size, components)
    if agent_signer is None:
        bundle, bundle_key = one_time_agent_bundle()
    else:
        bundle, bundle_key = build_agent_bundle(agent_signer), TrustedKey(agent_signer.public_key)
    done = provision(board, trusted, VENDOR_NAME, CLASS_NAME, firmware, bundle, bundle_key,
                     operators=operators, recovery=recovery, payload_kek=payload_kek)
    board.identity_public_path.write_bytes(done.identity_public_pem)
    encryption_public_path(board).write_bytes(done.encryption_public_pem)
    return done


def encrypted_sfui(directory: Path, signer: FileSigner, sequence: int,
                   recipients: Sequence[ec.EllipticCurvePublicKey], payload: bytes) -> Path:
    """An SFUI for VENDOR/CLASS whose payload is encrypted (A128GCM) for `recipients`' key-
    agreement keys, written into `directory`."""
    firmware, image = directory / f"fw{sequence}.bin", directory / f"enc-{sequence}.sfui"
    firmware.write_bytes(payload)
    sign_firmware(firmware, image, signer, ImageSpec(sequence, VENDOR, CLASS),
                  encryption=PayloadEncryption(recipients))
    return image


def encryption_public_path(board: SimBoard | Path) -> Path:
    """Where provisioning exported the board's public encryption key (as the CLI does)."""
    root = board if isinstance(board, Path) else board.root
    return root / "device-enc.pub.pem"

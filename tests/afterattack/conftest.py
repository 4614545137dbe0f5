"""Fixtures for the after-an-attack tests: boards provisioned with firmware, operator and
recovery anchors (once per session, copied per test), and a real agent process on a real
socket. The agent process helpers come from tests/agent, the short socket directory from
tests/conftest.py, the in-process reboot (boot ROM + stage 2) from tests/board."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sfupdate import keys
from sfupdate.formats.sfui import TrustedKey
from sfupdate.keys.files import FileSigner
from sfupdate.secure.agent.device import Device
from sfupdate.secure.agent.install import install
from sfupdate.secure.board.sim import open_board
from tests.afterattack.support import serve_agent
from tests.agent.support import RunningAgent
from tests.world import CLASS, FIRMWARE_V1, FIRMWARE_V2, VENDOR, provision_board, reboot


@dataclass(frozen=True)
class Keys:
    firmware: FileSigner  # es256_signer: signs v1 and v2
    second_firmware: FileSigner  # eddsa_signer: a second firmware anchor
    operator: FileSigner
    recovery: FileSigner
    operator_pub: Path
    recovery_pub: Path
    firmware_pub: Path
    operator_key: Path  # the operator's private key file, for the CLI


def _new_signer() -> FileSigner:
    return FileSigner(keys.generate_private_key("ES256"))


@pytest.fixture(scope="session")
def anchors(tmp_path_factory: pytest.TempPathFactory, es256_signer: FileSigner,
            eddsa_signer: FileSigner) -> Keys:
    root = tmp_path_factory.mktemp("anchors")
    operator_key = keys.generate_private_key("ES256")
    keys.write_private_key(operator_key, root / "operator.key")
    operator, recovery = FileSigner(operator_key), _new_signer()
    for name, signer in (("operator", operator), ("recovery", recovery),
                         ("firmware", es256_signer)):
        (root / f"{name}.pub").write_bytes(keys.public_pem(signer.public_key))
    return Keys(es256_signer, eddsa_signer, operator, recovery, root / "operator.pub",
                root / "recovery.pub", root / "firmware.pub", root / "operator.key")


def _signed(root: Path, name: str, payload: bytes, sequence: int, signer: FileSigner) -> Path:
    from sfupdate.authoring.author import ImageSpec, sign_firmware

    (root / f"{name}.bin").write_bytes(payload)
    sign_firmware(root / f"{name}.bin", root / f"{name}.sfui", signer,
                  ImageSpec(sequence, VENDOR, CLASS, f"{sequence}.0"))
    return root / f"{name}.sfui"


def _provisioned(root: Path, anchors: Keys, recovery: bool = True) -> Path:
    path = root / "board"
    v1 = _signed(root, "v1", FIRMWARE_V1, 1, anchors.firmware)
    provision_board(path, v1, [TrustedKey(anchors.firmware.public_key),
                               TrustedKey(anchors.second_firmware.public_key)],
                    operators=[TrustedKey(anchors.operator.public_key)],
                    recovery=[TrustedKey(anchors.recovery.public_key)] if recovery else [])
    reboot(path)  # a first boot: the boot log holds agent, manifest and firmware
    return path


@pytest.fixture(scope="session")
def confirmed_template(tmp_path_factory: pytest.TempPathFactory, anchors: Keys) -> Path:
    """v1 (sequence 1, firmware key) confirmed in slot A and running."""
    return _provisioned(tmp_path_factory.mktemp("confirmed"), anchors)


@pytest.fixture(scope="session")
def trial_template(tmp_path_factory: pytest.TempPathFactory, anchors: Keys) -> Path:
    """As confirmed_template, then v2 (sequence 2, signed by the SECOND firmware key)
    installed into slot B and booted as a trial: the device runs the trial."""
    root = tmp_path_factory.mktemp("trial")
    path = _provisioned(root, anchors)
    v2 = _signed(root, "v2", FIRMWARE_V2, 2, anchors.second_firmware)
    board = open_board(path)
    install(Device(board), io.BytesIO(v2.read_bytes()))
    result = reboot(board)
    assert (result.slot, result.trial) == ("B", True)
    return path


@pytest.fixture(scope="session")
def no_recovery_template(tmp_path_factory: pytest.TempPathFactory, anchors: Keys) -> Path:
    """v1 confirmed; firmware and operator anchors, but no recovery anchor."""
    return _provisioned(tmp_path_factory.mktemp("norecovery"), anchors, recovery=False)


CopyBoard = Callable[[Path], Path]


@pytest.fixture
def copy_board(tmp_path: Path) -> CopyBoard:
    counter = iter(range(10**6))

    def copy(template: Path) -> Path:
        dest = tmp_path / f"board{next(counter)}"
        shutil.copytree(template, dest)
        return dest

    return copy


@pytest.fixture
def board_dir(copy_board: CopyBoard, confirmed_template: Path) -> Path:
    return copy_board(confirmed_template)


@pytest.fixture
def trial_board(copy_board: CopyBoard, trial_template: Path) -> Path:
    return copy_board(trial_template)


@pytest.fixture
def agent(board_dir: Path, socket_dir: Path) -> Iterator[RunningAgent]:
    """A real agent on the confirmed board (v1 in slot A, running)."""
    with serve_agent(board_dir, socket_dir) as running:
        yield running


@pytest.fixture
def trial_agent(trial_board: Path, socket_dir: Path) -> Iterator[RunningAgent]:
    """A real agent on the trial board (v2 on trial in slot B, running; v1 confirmed in A)."""
    with serve_agent(trial_board, socket_dir) as running:
        yield running

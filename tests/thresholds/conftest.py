"""Fixtures for trust-anchor rotation and thresholds: a board provisioned with one firmware
anchor (F1, which signed the confirmed v1) and three operator anchors (once per session,
copied per test), and helpers to sign trust updates and multi-signature images."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from sfupdate import keys
from sfupdate.authoring.author import ImageSpec, sign_firmware
from sfupdate.formats.remote import Target
from sfupdate.formats.remote.trust import RoleKeys, TrustUpdate, sign_trust_update
from sfupdate.formats.sfui import TrustedKey
from sfupdate.keys.files import FileSigner
from sfupdate.secure.agent.device import Device
from sfupdate.secure.board.sim import open_board
from sfupdate.secure.kernel import SecureState
from tests.world import CLASS, VENDOR, provision_board, reboot

TARGET = Target(vendor_id=VENDOR, class_id=CLASS)


@dataclass(frozen=True)
class Signers:
    firmware: tuple[FileSigner, ...]  # F1 (provisioned, signed v1) .. F4
    operators: tuple[FileSigner, ...]  # O1 .. O3, all provisioned
    outsider: FileSigner  # X: no anchor anywhere
    directory: Path  # NAME.key (private PEM) and NAME.pub for each of them

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    def pub(self, name: str) -> Path:
        return self.directory / f"{name}.pub"


@pytest.fixture(scope="session")
def signers(tmp_path_factory: pytest.TempPathFactory) -> Signers:
    directory = tmp_path_factory.mktemp("keys")

    def new(name: str) -> FileSigner:
        key = keys.generate_private_key("ES256")
        keys.write_private_key(key, directory / f"{name}.key")
        (directory / f"{name}.pub").write_bytes(keys.public_pem(key.public_key()))
        return FileSigner(key)
    return Signers(tuple(new(f"F{i}") for i in range(1, 5)),
                   tuple(new(f"O{i}") for i in range(1, 4)), new("X"), directory)


def spki(signer: FileSigner) -> bytes:
    return signer.public_key.public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def role(name: str, threshold: int, *anchors: FileSigner) -> RoleKeys:
    return RoleKeys(name, threshold, tuple(spki(s) for s in anchors))


def trust_update(version: int, by: Sequence[FileSigner], *roles: RoleKeys) -> bytes:
    return sign_trust_update(TrustUpdate(TARGET, version, roles), by)


def signed_image(tmp: Path, sequence: int, by: Sequence[FileSigner]) -> Path:
    """Firmware `sequence` signed by every signer in `by` (one COSE_Sign1 each)."""
    firmware, out = tmp / f"fw{sequence}.bin", tmp / f"fw{sequence}-{len(by)}.sfui"
    firmware.write_bytes(f"firmware {sequence} ".encode() * 500)
    sign_firmware(firmware, out, by[0], ImageSpec(sequence, VENDOR, CLASS), cosigners=by[1:])
    return out


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory, signers: Signers) -> Path:
    root = tmp_path_factory.mktemp("thresholds")
    v1 = signed_image(root, 1, signers.firmware[:1])
    board = root / "board"
    provision_board(board, v1, [TrustedKey(signers.firmware[0].public_key)],
                    operators=[TrustedKey(s.public_key) for s in signers.operators])
    reboot(board)
    return board


@pytest.fixture
def board(tmp_path: Path, template: Path) -> Path:
    dest = tmp_path / "board"
    shutil.copytree(template, dest)
    return dest


def device(board: Path) -> Device:
    return Device(open_board(board))


def state(board: Path) -> SecureState:
    return device(board).kernel.state()


@contextmanager
def unchanged(board: Path) -> Iterator[None]:
    """The block must not write secure storage at all."""
    storage = open_board(board).storage
    before, counter = state(board), storage.write_counter
    yield
    assert state(board) == before
    assert open_board(board).storage.write_counter == counter

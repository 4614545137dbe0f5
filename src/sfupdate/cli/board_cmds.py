"""`sfu board ...`: create, provision, boot and confirm a simulated board."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sfupdate.cli.encryption_cmds import payload_kek_option
from sfupdate.cli.key_options import passphrase_file_option, unlock
from sfupdate.cli.render import ABSENT, emit_json, json_option, show_device_status, shown
from sfupdate.errors import UsageError
from sfupdate.secure.agent.confirm import confirm_intact
from sfupdate.secure.board.hal import Board, Fuse, Slot
from sfupdate.secure.board.power import POWER_CUT_EXIT, PowerCut
from sfupdate.secure.board.sim import create_board, open_board
from sfupdate.secure.kernel import Kernel

# Imported by the commands that use them: `sfu board linux mark-good` (every boot of a device)
# needs neither the signing tools nor provisioning nor the sim's ROM.
if TYPE_CHECKING:
    from sfupdate import keys
    from sfupdate.formats.sfui import TrustedKey

_dir = click.Path(path_type=Path, file_okay=False)
_existing = click.Path(path_type=Path, dir_okay=False, exists=True)
_UNITS = {"": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
          "g": 1 << 30, "gib": 1 << 30}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise UsageError(f"bad size {text!r} (examples: 65536, 64KiB, 64MiB, 1GiB)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


@click.group("board")
def board_group() -> None:
    """Simulated board: create, provision, boot, confirm, status; `linux` devices."""


@board_group.command("create")
@click.argument("directory", type=_dir)
@click.option("--slot-size", default="64MiB", show_default=True, help="Bytes per slot (A/B).")
@click.option("--component", "components", metavar="NAME:SIZE", multiple=True,
              help="A component of the board with its slot size (repeatable; replaces the one "
                   "component \"firmware\" of --slot-size). Every SFUI installs a set of "
                   "them; a component it does not name keeps its image.")
def create(directory: Path, slot_size: str, components: tuple[str, ...]) -> None:
    """Create a blank simulated board in DIRECTORY."""
    board = create_board(directory, parse_size(slot_size),
                         [_component(spec) for spec in components] or None)
    if len(board.components) == 1:
        click.echo(f"{directory}: blank board, two slots of {board.slots.size} bytes")
        return
    listed = ", ".join(f"{name} ({slots.size} bytes)" for name, slots in board.components.items())
    click.echo(f"{directory}: blank board, slots A and B each of components {listed}")


def _component(spec: str) -> tuple[str, int]:
    name, sep, size = spec.partition(":")
    if not sep:
        raise UsageError(f"--component {spec!r}: give NAME:SIZE (e.g. app:16MiB)")
    return name, parse_size(size)


@board_group.command("provision")
@click.argument("directory", type=_dir)
@click.option("--trust", "trust_files", type=_existing, multiple=True, required=True,
              help="Public key trusted to sign firmware (repeatable).")
@click.option("--vendor", required=True, help="Vendor name (domain) or vendor UUID.")
@click.option("--class", "klass", required=True, help="Device class name or class UUID.")
@click.option("--firmware", type=_existing, required=True, help="Initial firmware (SFUI).")
@click.option("--agent-key", type=_existing,
              help="Private key that signs the agent bundle; its hash is fused in OTP. "
                   "Default: a one-time key, forgotten after provisioning.")
@passphrase_file_option
@click.option("--operator", "operator_files", type=_existing, multiple=True,
              help="Public key trusted to sign remote commands and integrity policies "
                   "(repeatable).")
@click.option("--recovery", "recovery_files", type=_existing, multiple=True,
              help="Public key trusted to sign images while the device is quarantined "
                   "(repeatable).")
@payload_kek_option
def provision_cmd(directory: Path, trust_files: tuple[Path, ...], vendor: str, klass: str,
                  firmware: Path, agent_key: Path | None, passphrase_file: Path | None,
                  operator_files: tuple[Path, ...], recovery_files: tuple[Path, ...],
                  payload_kek: Path | None) -> None:
    """Fuse the root of trust, store trust anchors, install and confirm the first firmware."""
    from sfupdate import keys
    from sfupdate.authoring.author.encrypt import load_kek
    from sfupdate.cli.encryption_cmds import export_encryption_key
    from sfupdate.secure.boot.provision import provision

    board = open_board(directory)
    trusted = [keys.load_public_key(p) for p in trust_files]
    operators = [keys.load_public_key(p) for p in operator_files]
    recovery = [keys.load_public_key(p) for p in recovery_files]
    bundle, bundle_key = agent_bundle_for(agent_key, unlock(passphrase_file))
    done = provision(board, trusted, vendor, klass, firmware, bundle, bundle_key, operators,
                     recovery, load_kek(payload_kek) if payload_kek else None)
    board.identity_public_path.write_bytes(done.identity_public_pem)
    encryption_path = export_encryption_key(board.identity_public_path,
                                            done.encryption_public_pem)
    click.echo(f"{directory}: provisioned; slot A confirmed at sequence {done.image.sequence}; "
               f"root-key hash {done.root_key_hash.hex()}; "
               f"identity key {board.identity_public_path}; "
               f"encryption key {encryption_path}")


def agent_bundle_for(agent_key: Path | None, key_unlock: keys.Unlock | None = None
                     ) -> tuple[bytes, TrustedKey]:
    """The agent bundle to provision a board with, and the key whose hash gets fused: signed
    with `agent_key` (opened with `key_unlock` if encrypted), or with a one-time key that is then
    forgotten."""
    from sfupdate import keys
    from sfupdate.authoring.author.bundle import build_agent_bundle, one_time_agent_bundle
    from sfupdate.formats.sfui import TrustedKey

    if agent_key is None:
        return one_time_agent_bundle()
    signer = keys.load_signer(agent_key, unlock=key_unlock)
    return build_agent_bundle(signer), TrustedKey(signer.public_key)


def describe(board: Board) -> dict[str, Any]:
    """The board's state read from secure storage: the keys and meanings of
    `sfu agent status --json`, and what only the board knows (names, booted and confirmed
    slots, the trial's health, the storage write counter, each slot's version)."""
    provisioned = board.fuses.read(Fuse.LIFECYCLE) is not None
    out: dict[str, Any] = {"provisioned": provisioned, "slot_size": board.slots.size,
                           "components": [{"name": name, "size": slots.size}
                                          for name, slots in board.components.items()]}
    if not provisioned:
        return out
    state = Kernel(board.storage).state()
    record, device = state.boot, state.device
    out.update({
        "vendor_id": str(device.vendor_id), "class_id": str(device.class_id),
        "vendor": device.vendor_name, "class": device.class_name,
        "running_slot": record.running.value,
        "running_sequence": state.running_image.sequence,
        "rollback_floor": record.floor,
        "trial_slot": record.trial.value if record.trial else None,
        "trial_tries_left": record.tries_left if record.trial else None,
        "confirmed_slot": record.confirmed.value,
        "booted_slot": record.booted.value if record.booted else None,
        "trial_healthy": record.trial_healthy,
        "write_counter": board.storage.write_counter,
        "slots": {s.value: _slot(record.slot(s)) for s in Slot},
        "agent": {"active": state.agent.active.value, "floor": state.agent.floor,
                  "trial": state.agent.trial.value if state.agent.trial else None,
                  "sequence": state.agent.active_bundle.sequence},
    })
    return out


def _slot(rec: Any) -> dict[str, Any]:
    image = rec.image
    out = {"state": rec.status.value,
           "sequence": image.sequence if image else None,
           "version": image.version if image else None,
           "digest": image.digest.hex() if image else None}
    if image is not None and image.components is not None:
        out["components"] = [{"name": c.name, "sequence": c.sequence, "digest": c.digest.hex(),
                              "size": c.size} for c in image.components]
    return out


@board_group.command("status")
@click.argument("directory", type=_dir)
@json_option
def status(directory: Path, as_json: bool) -> None:
    """Show slots, versions, device class, rollback floor and trial state, read from secure
    storage: what `sfu agent status` shows, and the board's own details."""
    desc = describe(open_board(directory))
    if as_json:
        emit_json(desc)
        return
    if not desc["provisioned"]:
        click.echo(f"{directory}: blank (not provisioned), slot size {desc['slot_size']} bytes")
        return
    click.echo(f"device           {desc['vendor']} / {desc['class']}")
    show_device_status(desc)
    click.echo(f"confirmed        slot {desc['confirmed_slot']}")
    booted = desc["booted_slot"]
    click.echo(f"booted           {'slot ' + booted if booted else ABSENT}")
    agent = desc["agent"]
    click.echo(f"agent            partition {agent['active']}, sequence {agent['sequence']}, "
               f"rollback floor {agent['floor']}, trial {shown(agent['trial'])}")


@board_group.command("boot")
@click.argument("directory", type=_dir)
@json_option
def boot_cmd(directory: Path, as_json: bool) -> None:
    """Reboot: verify the agent bundle against OTP, run it, select/verify/run a slot."""
    from sfupdate.secure.boot.rom import boot, run_bundle

    board = open_board(directory)
    try:
        result = boot(board, run_bundle(directory, board.power))
    except PowerCut as exc:
        click.echo(f"sfu: {exc}", err=True)
        raise SystemExit(POWER_CUT_EXIT) from None
    if as_json:
        emit_json(result.__dict__)
        return
    for event in result.events:
        click.echo(event)
    kind = "trial" if result.trial else "confirmed"
    health = "healthy" if result.healthy else "UNHEALTHY"
    click.echo(f"booted slot {result.slot} ({kind}), sequence {result.sequence}, "
               f"version {shown(result.version)}, {health}; PCR {result.pcr}")


@board_group.command("confirm")
@click.argument("directory", type=_dir)
@json_option
def confirm(directory: Path, as_json: bool) -> None:
    """Confirm the running trial image; only then the rollback floor rises to it. The same
    checks (the trial's slot measured again) and transition as `sfu agent confirm`."""
    board = open_board(directory)
    confirm_intact(board, Kernel(board.storage))
    desc = describe(board)
    if as_json:
        emit_json(desc)
    else:
        confirmed = desc["slots"][desc["confirmed_slot"]]["sequence"]
        click.echo(f"confirmed sequence {confirmed}; rollback floor is now "
                   f"{desc['rollback_floor']}")

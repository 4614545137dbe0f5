"""`sfu board linux ...`: a real Linux device described by its configuration file
(/etc/sfupdate/device.toml, see docs/deploy.md): provision it, reconcile and confirm the
boot (the mark-good unit), show its state. cli/main.py adds the group to `sfu board`."""

from __future__ import annotations

from pathlib import Path

import click

from sfupdate.cli.board_cmds import describe
from sfupdate.cli.encryption_cmds import payload_kek_option
from sfupdate.cli.render import emit_json
from sfupdate.secure.board.linux.config import DEFAULT_PATH, load_config

_existing = click.Path(path_type=Path, dir_okay=False, exists=True)
config_option = click.option("--config", "config_path", type=_existing, default=DEFAULT_PATH,
                             show_default=True, help="The device configuration (TOML).")


@click.group("linux")
def linux_group() -> None:
    """A real Linux device (TPM, block-device slots, U-Boot or GRUB): provision, mark-good,
    status."""


@linux_group.command("provision")
@config_option
@click.option("--trust", "trust_files", type=_existing, multiple=True, required=True,
              help="Public key trusted to sign firmware (repeatable).")
@click.option("--vendor", required=True, help="Vendor name (domain) or vendor UUID.")
@click.option("--class", "klass", required=True, help="Device class name or class UUID.")
@click.option("--firmware", type=_existing, required=True, help="Initial firmware (SFUI).")
@click.option("--agent-key", type=_existing,
              help="Private key that signs the agent bundle; its hash goes into the TPM's "
                   "write-once index. Default: a one-time key, forgotten after provisioning.")
@click.option("--operator", "operator_files", type=_existing, multiple=True,
              help="Public key trusted to sign remote commands and integrity policies.")
@click.option("--recovery", "recovery_files", type=_existing, multiple=True,
              help="Public key trusted to sign images while the device is quarantined.")
@click.option("--insecure-storage", is_flag=True,
              help="INSECURE: with no [tpm] configured, keep fuses and secure storage in "
                   "plain files that root can read, forge and roll back. For development "
                   "boards only; never on a device in the field.")
@payload_kek_option
def provision_cmd(config_path: Path, trust_files: tuple[Path, ...], vendor: str, klass: str,
                  firmware: Path, agent_key: Path | None, operator_files: tuple[Path, ...],
                  recovery_files: tuple[Path, ...], insecure_storage: bool,
                  payload_kek: Path | None) -> None:
    """On the production line: write slot A, create the TPM key and indices, store the trust
    anchors, lock the TPM's owner hierarchy. Run as root, then hand state_dir to the agent's
    user (docs/deploy.md)."""
    from sfupdate import keys
    from sfupdate.authoring.author.encrypt import load_kek
    from sfupdate.cli.board_cmds import agent_bundle_for
    from sfupdate.cli.encryption_cmds import export_encryption_key
    from sfupdate.secure.board.linux.board import LinuxBoard
    from sfupdate.secure.boot.provision import provision

    board = LinuxBoard(load_config(config_path), insecure_storage=insecure_storage)
    if board.insecure:
        click.echo("sfu: WARNING: --insecure-storage: no TPM; secure storage is plain files "
                   "anyone with root can roll back or forge", err=True)
    bundle, bundle_key = agent_bundle_for(agent_key)
    done = provision(board, [keys.load_public_key(p) for p in trust_files], vendor, klass,
                     firmware, bundle, bundle_key,
                     [keys.load_public_key(p) for p in operator_files],
                     [keys.load_public_key(p) for p in recovery_files],
                     load_kek(payload_kek) if payload_kek else None)
    board.identity_public_path.write_bytes(done.identity_public_pem)
    encryption_path = export_encryption_key(board.identity_public_path,
                                            done.encryption_public_pem)
    click.echo(f"{config_path}: provisioned; slot A confirmed at sequence "
               f"{done.image.sequence}; root-key hash {done.root_key_hash.hex()}; "
               f"identity key {board.identity_public_path}; "
               f"encryption key {encryption_path}")


@linux_group.command("mark-good")
@config_option
@click.option("--no-confirm", is_flag=True,
              help="Record the boot and its health, but leave a healthy trial unconfirmed.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def mark_good(config_path: Path, no_confirm: bool, as_json: bool) -> None:
    """After boot: record which slot the bootloader booted (sfu.slot= on the kernel command
    line), verify it, run the health command, confirm a healthy trial or reject a failing
    one, and re-mirror the bootloader environment. Exit 12 if the trial was rejected."""
    from sfupdate.errors import DeviceStateError
    from sfupdate.secure.board.linux.board import LinuxBoard
    from sfupdate.secure.boot.linux import reconcile_this_boot

    result = reconcile_this_boot(LinuxBoard(load_config(config_path)), not no_confirm)
    if as_json:
        emit_json(result.__dict__)
    else:
        for event in result.events:
            click.echo(event)
    if result.trial and not result.healthy:
        raise DeviceStateError(f"trial slot {result.slot} failed its health check: rejected")


@linux_group.command("encryption-key")
@config_option
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the public PEM here (default: stdout).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def encryption_key(config_path: Path, output: Path | None, as_json: bool) -> None:
    """Export the device's public encryption key (for `sfu sign --encrypt-for`); run as the
    agent's user, who alone may open secure storage."""
    from sfupdate.cli.encryption_cmds import show_encryption_key
    from sfupdate.secure.board.linux.board import LinuxBoard

    show_encryption_key(LinuxBoard(load_config(config_path)).storage, str(config_path),
                        output, as_json)


@linux_group.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(config_path: Path, as_json: bool) -> None:
    """Fuses, slots, trial, floor and the bootloader environment."""
    from sfupdate.secure.board.linux.board import LinuxBoard

    board = LinuxBoard(load_config(config_path))
    desc = describe(board)
    desc["bootloader"] = board.mirror.env.read() if board.mirror else None
    desc["insecure_storage"] = board.insecure
    if as_json:
        emit_json(desc)
        return
    for key, value in desc.items():
        click.echo(f"{key:<16} {value}")

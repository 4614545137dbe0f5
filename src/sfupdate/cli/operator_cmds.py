"""Operator commands: `sfu remote sign`, `sfu remote policy-sign`, `sfu attest verify` (the
carrier on the device, `sfu client remote`, is a client command: cli/delivery_cmds.py). What
a command or a policy says is composed by
`sfupdate.authoring.operator`; these commands parse options, sign and report."""

from __future__ import annotations

import time
from pathlib import Path

import click

from sfupdate import keys
from sfupdate.authoring.operator import compose_command, policy_from_json, target_for
from sfupdate.cli.key_options import KEY_METAVAR, unlock, unlock_options
from sfupdate.cli.render import (
    ABSENT,
    emit_json,
    json_option,
    parse_nonce,
    plural,
    read_bounded,
    target_options,
    write_output,
)
from sfupdate.errors import UsageError
from sfupdate.formats.ipc.messages import MAX_COMMAND
from sfupdate.formats.remote import (
    ACTIONS,
    AttestationClaims,
    read_command,
    sign_command,
    sign_policy,
    verify_answer,
    verify_token,
)
from sfupdate.formats.remote.eat import MAX_TOKEN_SIZE

_path = click.Path(path_type=Path, dir_okay=False)
_existing = click.Path(path_type=Path, dir_okay=False, exists=True)


@click.group("remote")
def remote_group() -> None:
    """Operator side: sign remote commands and integrity policies for devices."""


@remote_group.command("sign")
@click.option("--key", "key_ref", metavar=KEY_METAVAR, required=True,
              help="The operator's private key (provisioned as an operator anchor): a PEM "
                   "file or a pkcs11: URI.")
@unlock_options
@click.option("--action", type=click.Choice(sorted(ACTIONS)), required=True,
              help="What the device is to do (docs/after-attack.md).")
@target_options
@click.option("--number", type=click.IntRange(1, 2**64 - 1), required=True,
              help="Command number: must be above the last one the device accepted.")
@click.option("--expires-in", type=click.IntRange(1, 10 * 365 * 86400), metavar="SECONDS",
              help="Refused by the device after this many seconds from now.")
@click.option("--nonce", metavar="HEX",
              help="inspect: the attestation nonce, hex (default: 16 random bytes).")
@click.option("--recovery-key", metavar="PUB|KEYID",
              help="quarantine: the recovery anchor that alone may sign images.")
@click.option("--revoke", metavar="PUB|KEYID", help="revoke-key: the firmware anchor to revoke.")
@click.option("--through", type=click.IntRange(0, 2**64 - 1), metavar="N",
              help="acknowledge: release the pinned events numbered up to N (sfu agent audit).")
@click.option("-o", "--output", type=_path, required=True, help="The signed command to write.")
@json_option
def remote_sign(key_ref: str, passphrase_file: Path | None, pkcs11_module: str | None,
                action: str, device_key: Path | None, vendor: str | None,
                klass: str | None, number: int, expires_in: int | None, nonce: str | None,
                recovery_key: str | None, revoke: str | None, through: int | None,
                output: Path, as_json: bool) -> None:
    """Sign a remote command (COSE_Sign1 over CBOR) for one device or a device class. Its
    issue time (now) is signed too: the device never judges an expiry by a clock below the
    latest issue time it verified."""
    command = compose_command(
        target_for(device_key, vendor, klass), number, action, now=int(time.time()),
        expires_in=expires_in, nonce=None if nonce is None else parse_nonce(nonce, "--nonce"),
        recovery_key=recovery_key, revoke=revoke, through=through)
    signer = keys.load_signer(key_ref, unlock=unlock(passphrase_file, pkcs11_module))
    write_output(output, sign_command(command, signer))
    shown_nonce = command.arguments["nonce"].hex() if action == "inspect" else None
    if as_json:
        emit_json({"file": str(output), "action": action, "number": number,
                   "nonce": shown_nonce, "expires": command.expires})
    else:
        nonce_note = f", nonce {shown_nonce}" if shown_nonce else ""
        click.echo(f"{output}: {action} command {number}{nonce_note}")


@remote_group.command("policy-sign")
@click.argument("policy_json", type=_existing)
@click.option("--key", "key_ref", metavar=KEY_METAVAR, required=True,
              help="The operator's private key (provisioned as an operator anchor): a PEM "
                   "file or a pkcs11: URI.")
@unlock_options
@target_options
@click.option("--sequence", type=click.IntRange(1, 2**64 - 1), required=True,
              help="Policy sequence number: must be above the installed policy's.")
@click.option("-o", "--output", type=_path, required=True, help="The signed policy to write.")
@json_option
def policy_sign(policy_json: Path, key_ref: str, passphrase_file: Path | None,
                pkcs11_module: str | None, device_key: Path | None, vendor: str | None,
                klass: str | None, sequence: int, output: Path, as_json: bool) -> None:
    """Sign an integrity policy from POLICY_JSON: {"regions": [{"name", "file" | "slot",
    "offset", "length", "sha256" (hex) | "sha256_of" (a reference file here),
    "on_mismatch": "report" | "revert"}]}."""
    policy = policy_from_json(policy_json, target_for(device_key, vendor, klass), sequence)
    signer = keys.load_signer(key_ref, unlock=unlock(passphrase_file, pkcs11_module))
    write_output(output, sign_policy(policy, signer))
    if as_json:
        emit_json({"file": str(output), "sequence": sequence, "regions": len(policy.regions)})
    else:
        click.echo(f"{output}: integrity policy {sequence}, "
                   f"{plural(len(policy.regions), 'region')}")


@click.group("attest")
def attest_group() -> None:
    """Operator side: verify attestation tokens from devices."""


@attest_group.command("verify")
@click.argument("token_file", type=_existing)
@click.option("--device-key", type=_existing, required=True,
              help="The device's identity public key (device-id.pub.pem).")
@click.option("--nonce", metavar="HEX", help="The nonce the token must answer (hex).")
@click.option("--command", "command_file", type=_existing,
              help="Or: the signed command it answers; the token must then be the device's "
                   "answer to exactly that command (nonce and answer claim).")
@json_option
def attest_verify(token_file: Path, device_key: Path, nonce: str | None,
                  command_file: Path | None, as_json: bool) -> None:
    """Check a token's signature (device identity key) and nonce; print its claims."""
    if (nonce is None) == (command_file is None):
        raise UsageError("give --nonce HEX or --command CMD.cose")
    token, device = read_bounded(token_file, MAX_TOKEN_SIZE), keys.load_public_key(device_key)
    if command_file is not None:
        signed = read_bounded(command_file, MAX_COMMAND)
        claims = verify_answer(token, device, read_command(signed), signed)
    else:
        claims = verify_token(token, device, parse_nonce(nonce or "", "--nonce"))
    if as_json:
        emit_json(claims.to_json())
    else:
        _show_claims(claims)


def _show_claims(claims: AttestationClaims) -> None:
    issued = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(claims.issued_at))
    click.echo(f"verified: signed by device {claims.ueid.hex()}, issued {issued}")
    click.echo(f"vendor-id        {claims.vendor_id}")
    click.echo(f"class-id         {claims.class_id}")
    running = {s.name: s.sequence for s in claims.slots}.get(claims.running_slot)
    click.echo(f"running          slot {claims.running_slot}, sequence {running}")
    click.echo(f"rollback floor   {claims.rollback_floor}")
    click.echo("trial            " + (f"slot {claims.trial_slot}" if claims.trial_slot
                                      else ABSENT))
    for slot in claims.slots:
        sequence = ABSENT if slot.sequence is None else str(slot.sequence)
        shown = slot.digest.hex()[:16] if slot.digest else ABSENT
        click.echo(f"slot {slot.name}           {slot.state:<10} sequence {sequence:<6} "
                   f"sha256 {shown}")
    click.echo(f"boot log         {plural(len(claims.boot_log), 'measurement')}")
    for digest in claims.boot_log:
        click.echo(f"  {digest.hex()}")
    quarantine = claims.quarantine.hex()[:16] if claims.quarantine else ABSENT
    click.echo(f"quarantine       {quarantine}")
    click.echo(f"last command     {claims.last_command}")
    if claims.answer is not None:
        click.echo(f"answers command  {claims.answer.command} ({claims.answer.action}): "
                   f"{claims.answer.outcome}")
    click.echo("integrity")
    for item in claims.to_json()["integrity"]:
        click.echo(f"  {item['result'].upper():<9} {item['region']}")

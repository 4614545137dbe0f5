"""Operator commands: `sfu remote sign`, `sfu remote policy-sign`, `sfu attest verify`, and
the carrier `sfu client remote` (the Rich-OS client forwards a signed command and its answer)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import click

from sfupdate import keys
from sfupdate.cli.agent_cmds import parse_hex, parse_nonce, socket_option, timeout_option
from sfupdate.cli.key_options import KEY_METAVAR, unlock, unlock_options
from sfupdate.cli.render import ABSENT, emit_json, json_option, plural, write_output
from sfupdate.errors import UsageError
from sfupdate.formats.ipc.client import AgentClient
from sfupdate.formats.ipc.messages import MAX_COMMAND
from sfupdate.formats.remote import (
    ACTIONS,
    AttestationClaims,
    IntegrityPolicy,
    Region,
    RemoteCommand,
    Target,
    read_command,
    sign_command,
    sign_policy,
    ueid_for,
    verify_answer,
    verify_token,
)
from sfupdate.formats.remote.eat import MAX_TOKEN_SIZE
from sfupdate.formats.sfui import class_uuid, vendor_uuid

_path = click.Path(path_type=Path, dir_okay=False)
_existing = click.Path(path_type=Path, dir_okay=False, exists=True)
_HEX_KID = re.compile(r"[0-9a-fA-F]{64}")


def register(group: click.Group) -> None:
    group.add_command(remote_group)
    group.add_command(attest_group)
    client = group.commands.get("client")
    if not isinstance(client, click.Group):
        raise RuntimeError("register the delivery commands (sfu client) first")
    client.add_command(client_remote)


def _target(device_key: Path | None, vendor: str | None, klass: str | None) -> Target:
    if device_key is not None:
        if vendor or klass:
            raise UsageError("give --device-key, or --vendor and --class, not both")
        return Target(ueid=ueid_for(keys.load_public_key(device_key).public_key))
    if not (vendor and klass):
        raise UsageError("name the target: --device-key DEVICE.pub, or --vendor V --class C")
    vendor_id = vendor_uuid(vendor)
    return Target(vendor_id=vendor_id, class_id=class_uuid(vendor_id, klass))


def _key_id(value: str, option: str) -> bytes:
    """A key ID from a public key file, or given as 64 hex digits."""
    if _HEX_KID.fullmatch(value):
        return bytes.fromhex(value)
    if os.path.isfile(value):
        return keys.load_public_key(Path(value)).kid
    raise UsageError(f"{option} takes a public key file or a 64-digit hex key ID")


_target_options = [
    click.option("--device-key", type=_existing,
                 help="Target one device: its identity public key (device-id.pub.pem)."),
    click.option("--vendor", help="Target a device class: vendor name (domain) or UUID."),
    click.option("--class", "klass", help="Target a device class: class name or UUID."),
]


def _with_target(f: Any) -> Any:
    for option in reversed(_target_options):
        f = option(f)
    return f


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
@_with_target
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
    given: dict[str, str | int | None] = {"nonce": nonce, "recovery_key_id": recovery_key,
                                          "key_id": revoke, "through": through}
    options = {"nonce": "--nonce", "recovery_key_id": "--recovery-key", "key_id": "--revoke",
               "through": "--through"}
    arguments: dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            continue
        if name not in ACTIONS[action]:
            raise UsageError(f"{options[name]} does not apply to {action}")
        if isinstance(value, int):
            arguments[name] = value
        else:
            arguments[name] = (parse_nonce(value, "--nonce") if name == "nonce"
                               else _key_id(value, options[name]))
    if action == "inspect" and "nonce" not in arguments:
        arguments["nonce"] = os.urandom(16)
    missing = set(ACTIONS[action]) - set(arguments)
    if missing:
        raise UsageError(f"{action} needs " + ", ".join(options[m] for m in sorted(missing)))
    now = int(time.time())
    expires = now + expires_in if expires_in else None
    command = RemoteCommand(_target(device_key, vendor, klass), number, action, arguments,
                            expires, issued=now)
    signer = keys.load_signer(key_ref, unlock=unlock(passphrase_file, pkcs11_module))
    write_output(output, sign_command(command, signer))
    shown_nonce = arguments["nonce"].hex() if action == "inspect" else None
    if as_json:
        emit_json({"file": str(output), "action": action, "number": number,
                   "nonce": shown_nonce, "expires": expires})
    else:
        nonce_note = f", nonce {shown_nonce}" if shown_nonce else ""
        click.echo(f"{output}: {action} command {number}{nonce_note}")


@remote_group.command("policy-sign")
@click.argument("policy_json", type=_existing)
@click.option("--key", "key_ref", metavar=KEY_METAVAR, required=True,
              help="The operator's private key (provisioned as an operator anchor): a PEM "
                   "file or a pkcs11: URI.")
@unlock_options
@_with_target
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
    try:
        spec = json.loads(policy_json.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{policy_json}: not readable JSON ({exc})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("regions"), list):
        raise UsageError(f"{policy_json}: expected an object with a \"regions\" list")
    regions = tuple(_region(item, policy_json.parent) for item in spec["regions"])
    policy = IntegrityPolicy(_target(device_key, vendor, klass), sequence, regions)
    signer = keys.load_signer(key_ref, unlock=unlock(passphrase_file, pkcs11_module))
    write_output(output, sign_policy(policy, signer))
    if as_json:
        emit_json({"file": str(output), "sequence": sequence, "regions": len(regions)})
    else:
        click.echo(f"{output}: integrity policy {sequence}, {plural(len(regions), 'region')}")


def _region(item: Any, base: Path) -> Region:
    if not isinstance(item, dict):
        raise UsageError("each region is a JSON object")
    allowed = {"name", "file", "slot", "offset", "length", "sha256", "sha256_of",
               "on_mismatch"}
    if set(item) - allowed:
        raise UsageError(f"unknown region keys: {sorted(set(item) - allowed)}")
    if ("sha256" in item) == ("sha256_of" in item):
        raise UsageError("give each region exactly one of sha256 and sha256_of")
    if "sha256" in item:
        digest = parse_hex(str(item["sha256"]), "sha256")
    else:
        reference = base / str(item["sha256_of"])
        digest = _file_sha256(reference, item.get("offset", 0), item.get("length"))
    try:
        return Region(str(item.get("name", "")), digest, str(item.get("on_mismatch", "report")),
                      path=item.get("file"), slot=item.get("slot"),
                      offset=int(item.get("offset", 0)), length=int(item.get("length", 0)))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bad region {item.get('name')!r}: {exc}") from None


def _file_sha256(path: Path, offset: Any, length: Any) -> bytes:
    hasher = hashlib.sha256()
    try:
        with path.open("rb") as f:
            f.seek(int(offset))
            remaining = None if length is None else int(length)
            while remaining is None or remaining > 0:
                chunk = f.read(1 << 20 if remaining is None else min(1 << 20, remaining))
                if not chunk:
                    break
                hasher.update(chunk)
                if remaining is not None:
                    remaining -= len(chunk)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    return hasher.digest()


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
    token, device = _read(token_file, MAX_TOKEN_SIZE), keys.load_public_key(device_key)
    if command_file is not None:
        signed = _read(command_file, MAX_COMMAND)
        claims = verify_answer(token, device, read_command(signed), signed)
    else:
        claims = verify_token(token, device, parse_nonce(nonce or "", "--nonce"))
    if as_json:
        emit_json(claims.to_json())
    else:
        _show_claims(claims)


def _read(path: Path, limit: int) -> bytes:
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"{path} is larger than {limit} bytes")
    return data


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


@click.command("remote")
@click.argument("command_file", type=_existing)
@socket_option
@timeout_option
@click.option("-o", "--output", type=_path,
              help="Write the device's answer (an attestation token) here.")
@json_option
def client_remote(command_file: Path, socket_path: Path, timeout: float, output: Path | None,
                  as_json: bool) -> None:
    """Carry a signed remote command to the agent and its answer back. The agent checks the
    operator's signature, the target, the command number and the expiry."""
    result = AgentClient(socket_path, timeout).remote(_read(command_file, MAX_COMMAND))
    if output is not None:
        write_output(output, result.token)
    if as_json:
        emit_json(result.to_json())
    else:
        click.echo(f"{result.action} (command {result.number}): {result.message}")


"""Device-side commands: `sfu agent serve|status|confirm|reject-trial|check|attest|audit`,
`sfu agent policy install` and `sfu install`."""

from __future__ import annotations

import os
import signal
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import BinaryIO

import click

from sfupdate.cli.render import emit_json, progress_bar
from sfupdate.errors import IntegrityError, UsageError
from sfupdate.ipc.client import AgentClient, AgentStatus
from sfupdate.ipc.framing import DEFAULT_TIMEOUT, MAX_CHUNK
from sfupdate.ipc.messages import MAX_POLICY

_socket_option = click.option("--socket", "socket_path", required=True,
                              type=click.Path(path_type=Path, dir_okay=False),
                              help="The agent's Unix socket.")
_timeout_option = click.option("--timeout", type=click.FloatRange(min=0.1),
                               default=DEFAULT_TIMEOUT, show_default=True,
                               help="Seconds to wait for each message.")


def register(group: click.Group) -> None:
    group.add_command(agent_group)
    group.add_command(install_cmd)


@click.group("agent")
def agent_group() -> None:
    """Run the SFU Agent, or talk to a running one."""


@agent_group.command("serve")
@click.option("--board", "board_dir", required=True,
              type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="The board directory (sim backend).")
@_socket_option
@_timeout_option
@click.option("--group-access", is_flag=True,
              help="Socket mode 0660 (owner and group) instead of 0600.")
@click.option("--check-interval", type=click.FloatRange(min=0), default=0, show_default=True,
              metavar="SECONDS",
              help="Re-measure the running slot, the agent bundle and the policy's regions "
                   "every SECONDS (0: only on demand).")
def serve(board_dir: Path, socket_path: Path, timeout: float, group_access: bool,
          check_interval: float) -> None:
    """Serve the board's agent on a Unix socket until SIGTERM or Ctrl-C."""
    # Imported here: the client-side commands need none of the secure world's code.
    from sfupdate.agent.device import Device
    from sfupdate.agent.server import AgentServer
    from sfupdate.board.sim import open_board

    device = Device(open_board(board_dir))
    device.kernel.state()  # refuse to start on an unprovisioned or tampered board
    server = AgentServer(device, socket_path, timeout, group_access, check_interval or None)
    server.bind()

    def stop(signum: int, frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(f"sfu-agent: serving {board_dir} on {socket_path}", err=True)
    server.serve_forever()


@agent_group.command("bundle")
@click.option("--key", "key_file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              required=True,
              help="The private key whose hash the boards have fused (`board provision "
                   "--agent-key`).")
@click.option("--sequence", type=click.IntRange(1, 2**64 - 1), required=True,
              help="The bundle's sequence number: above the agent floor of the boards.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              required=True, help="The signed agent bundle (SFUI) to write.")
def bundle(key_file: Path, sequence: int, output: Path) -> None:
    """Build and sign an agent bundle of the installed sfupdate, to update the agent of
    provisioned boards: `sfu install BUNDLE` puts it in the inactive agent partition, the
    next boot runs it once, and it confirms itself."""
    from sfupdate.boot.bundle import build_agent_bundle
    from sfupdate.keys import load_signer

    data = build_agent_bundle(load_signer(key_file), sequence)
    output.write_bytes(data)
    click.echo(f"{output}: agent bundle sequence {sequence}, {len(data)} bytes")


@agent_group.command("status")
@_socket_option
@_timeout_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(socket_path: Path, timeout: float, as_json: bool) -> None:
    """Show slots, versions, device class, rollback floor and trial state."""
    _show(AgentClient(socket_path, timeout).status(), as_json)


@agent_group.command("confirm")
@_socket_option
@_timeout_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def confirm(socket_path: Path, timeout: float, as_json: bool) -> None:
    """Confirm the booted trial image; the rollback floor rises to its sequence number."""
    _show(AgentClient(socket_path, timeout).confirm(), as_json)


@agent_group.command("reject-trial")
@_socket_option
@_timeout_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def reject_trial(socket_path: Path, timeout: float, as_json: bool) -> None:
    """Mark the trial image bad; the confirmed image boots next."""
    _show(AgentClient(socket_path, timeout).reject_trial(), as_json)


@agent_group.command("check")
@_socket_option
@_timeout_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check(socket_path: Path, timeout: float, as_json: bool) -> None:
    """Re-measure the running slot, the agent bundle and the integrity policy's regions now.
    Exit 16 if any region does not match (each mismatch is logged in secure storage)."""
    report = AgentClient(socket_path, timeout).check()
    if as_json:
        emit_json(report.to_json())
    else:
        for result in report.results:
            action = "" if result.action == "none" else f" [{result.action}]"
            click.echo(f"{result.result.upper():<9} {result.region:<24} {result.detail}{action}")
    bad = [r.region for r in report.results if r.result != "ok"]
    if bad:
        raise IntegrityError(f"integrity check: {len(bad)} region(s) do not match: "
                             f"{', '.join(bad)}")


@agent_group.command("attest")
@click.option("--nonce", required=True, help="8 to 64 bytes in hex, chosen by the verifier.")
@_socket_option
@_timeout_option
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the token (COSE_Sign1 EAT) here; default: hex on stdout.")
def attest(nonce: str, socket_path: Path, timeout: float, output: Path | None) -> None:
    """Ask the agent for an attestation token signed with the device identity key."""
    token = AgentClient(socket_path, timeout).attest(parse_hex(nonce, "--nonce"))
    if output is None:
        click.echo(token.hex())
    else:
        output.write_bytes(token)
        click.echo(f"{output}: attestation token, {len(token)} bytes", err=True)


@agent_group.command("audit")
@_socket_option
@_timeout_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def audit(socket_path: Path, timeout: float, as_json: bool) -> None:
    """Show the last remote command number, quarantine, the policy in force and the event
    log (newest last)."""
    info = AgentClient(socket_path, timeout).audit()
    if as_json:
        emit_json(info.to_json())
        return
    click.echo(f"last command     {info.last_command}")
    click.echo(f"quarantine       {info.quarantine or 'no'}")
    policy = "none" if info.policy_sequence is None else f"sequence {info.policy_sequence}"
    click.echo(f"integrity policy {policy}")
    click.echo(f"time floor       {info.time_floor}")
    pinned = sum(e.pinned for e in info.events)
    click.echo(f"events           {info.events_total} logged; {len(info.events)} kept, "
               f"{pinned} pinned until acknowledged (acknowledged up to #{info.acknowledged})")
    for event in info.events:
        repeats = f" (x{event.count}, last {event.last})" if event.count > 1 else ""
        pin = "*" if event.pinned else " "
        click.echo(f" {pin}#{event.number} {event.first} {event.kind} {event.subject}: "
                   f"{event.detail}{repeats}")


@agent_group.group("policy")
def policy_group() -> None:
    """Integrity policies (signed by an operator key: `sfu remote policy-sign`)."""


@policy_group.command("install")
@click.argument("policy_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@_socket_option
@_timeout_option
def policy_install(policy_file: Path, socket_path: Path, timeout: float) -> None:
    """Install a signed integrity policy; the agent checks signature, target and sequence."""
    with policy_file.open("rb") as f:
        data = f.read(MAX_POLICY + 1)
    if len(data) > MAX_POLICY:
        raise UsageError(f"{policy_file} is larger than any policy ({MAX_POLICY} bytes)")
    sequence, regions = AgentClient(socket_path, timeout).install_policy(data)
    click.echo(f"installed integrity policy {sequence} ({regions} regions)")


def parse_hex(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise UsageError(f"{what} must be hexadecimal") from None


@click.command("install")
@click.argument("sfui", type=click.Path(path_type=Path, dir_okay=False, exists=True,
                                        allow_dash=True))
@_socket_option
@_timeout_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def install_cmd(sfui: Path, socket_path: Path, timeout: float, as_json: bool) -> None:
    """Install an SFUI through the local agent (as a trial; reboot to run it).

    SFUI may be - (stdin), /dev/stdin or another pipe: its length is then unknown to the
    client, and the agent bounds it by what the envelope declares."""
    client = AgentClient(socket_path, timeout)
    with _open_sfui(sfui) as f, progress_bar("installing") as progress:
        result = client.install(_read_chunks(f), size=_known_size(f), progress=progress)
    if as_json:
        emit_json(result.to_json())
    else:
        click.echo(f"installed sequence {result.sequence} into slot {result.slot} as a trial "
                   f"(sha256 {result.digest}); reboot to run it")


def _open_sfui(sfui: Path) -> BinaryIO:
    if str(sfui) == "-":
        return open(sys.stdin.fileno(), "rb", closefd=False)
    return sfui.open("rb")


def _known_size(f: BinaryIO) -> int | None:
    """The bytes left in a regular file; None for a pipe, a FIFO or a terminal."""
    info = os.fstat(f.fileno())
    return info.st_size - f.tell() if stat.S_ISREG(info.st_mode) else None


def _read_chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(MAX_CHUNK):
        yield chunk


def _show(status: AgentStatus, as_json: bool) -> None:
    if as_json:
        emit_json(status.to_json())
        return
    click.echo(f"vendor-id        {status.vendor_id}")
    click.echo(f"class-id         {status.class_id}")
    click.echo(f"running          slot {status.running_slot}, sequence "
               f"{status.running_sequence}")
    click.echo(f"rollback floor   {status.rollback_floor}")
    if status.trial_slot is None:
        click.echo("trial            none")
    else:
        click.echo(f"trial            slot {status.trial_slot}, "
                   f"{status.trial_tries_left} tries left")
    for name, slot in sorted(status.slots.items()):
        sequence = "-" if slot.sequence is None else str(slot.sequence)
        digest = slot.digest[:16] if slot.digest else "-"
        click.echo(f"slot {name}           {slot.state:<10} sequence {sequence:<6} "
                   f"sha256 {digest}")

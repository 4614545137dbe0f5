"""Device-side commands: `sfu agent serve|status|confirm|mark-good|reject-trial|check|attest|
audit`, `sfu agent policy install` and `sfu install`."""

from __future__ import annotations

import os
import signal
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import BinaryIO

import click

from sfupdate.cli.render import (
    ABSENT,
    emit_json,
    error_object,
    json_option,
    parse_nonce,
    plural,
    progress,
    progress_option,
    read_bounded,
    show_device_status,
    socket_option,
    timeout_option,
    write_output,
)
from sfupdate.errors import DeviceStateError, IntegrityError, IpcError, UsageError
from sfupdate.formats.ipc.client import AgentClient, AgentStatus
from sfupdate.formats.ipc.framing import DEFAULT_TIMEOUT, MAX_CHUNK
from sfupdate.formats.ipc.messages import MAX_NONCE, MAX_POLICY, MIN_NONCE


@click.group("agent")
def agent_group() -> None:
    """Run the SFU Agent, or talk to a running one."""


@agent_group.command("serve")
@click.option("--board", "board_dir", type=click.Path(path_type=Path, file_okay=False,
                                                       exists=True),
              help="The board directory (sim backend).")
@click.option("--config", "config_path",
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The device configuration (linux backend, e.g. /etc/sfupdate/device.toml).")
@click.option("--socket", "socket_path", type=click.Path(path_type=Path, dir_okay=False),
              metavar="PATH",
              help="The agent's Unix socket (default with --config: the configured one).")
@click.option("--timeout", type=click.FloatRange(min=0.1), metavar="SECONDS",
              default=DEFAULT_TIMEOUT, show_default=True,
              help="Seconds to wait for each message from a client.")
@click.option("--group-access", is_flag=True,
              help="Socket mode 0660 (owner and group) instead of 0600.")
@click.option("--check-interval", type=click.FloatRange(min=0), default=0, show_default=True,
              metavar="SECONDS",
              help="Re-measure the running slot, the agent bundle and the policy's regions "
                   "every SECONDS (0: only on demand).")
def serve(board_dir: Path | None, config_path: Path | None, socket_path: Path | None,
          timeout: float, group_access: bool, check_interval: float) -> None:
    """Serve the board's agent on a Unix socket until SIGTERM or Ctrl-C. A linux device
    (--config) first records this boot (which slot the bootloader started, its health) in
    the kernel, as `sfu board linux mark-good --no-confirm` does."""
    # Imported here: the client-side commands need none of the secure world's code.
    from sfupdate.secure.agent.device import Device
    from sfupdate.secure.agent.server import AgentServer
    from sfupdate.secure.board.hal import Board

    board: Board
    if (board_dir is None) == (config_path is None):
        raise UsageError("give exactly one of --board (sim) and --config (linux device)")
    if board_dir is not None:
        from sfupdate.secure.board.sim import open_board
        board, where = open_board(board_dir), str(board_dir)
    else:
        assert config_path is not None
        from sfupdate.secure.board.linux.board import LinuxBoard
        from sfupdate.secure.board.linux.config import load_config
        from sfupdate.secure.boot.linux import reconcile_this_boot
        linux = LinuxBoard(load_config(config_path))
        reconcile_this_boot(linux, confirm=False)
        board, where = linux, str(config_path)
        socket_path = socket_path or linux.config.socket
    if socket_path is None:
        raise UsageError("--socket is required with --board")
    device = Device(board)
    device.kernel.state()  # refuse to start on an unprovisioned or tampered board
    server = AgentServer(device, socket_path, timeout, group_access, check_interval or None)
    server.bind()

    def stop(signum: int, frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(f"sfu-agent: serving {where} on {socket_path}", err=True)
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
# as sfupdate.cli.key_options' option, which `sfu agent status` must not import
@click.option("--passphrase-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="File whose first line is the passphrase of an encrypted key (else "
                   "$SFU_KEY_PASSPHRASE, else asked on a terminal).")
@json_option
def bundle(key_file: Path, sequence: int, output: Path, passphrase_file: Path | None,
           as_json: bool) -> None:
    """Build and sign an agent bundle of the installed sfupdate, to update the agent of
    provisioned boards: `sfu install BUNDLE` puts it in the inactive agent partition, the
    next boot runs it once, and it confirms itself."""
    from sfupdate.authoring.author.bundle import build_agent_bundle
    from sfupdate.cli.key_options import unlock
    from sfupdate.keys import load_signer

    data = build_agent_bundle(load_signer(key_file, unlock=unlock(passphrase_file)), sequence)
    write_output(output, data)
    if as_json:
        emit_json({"file": str(output), "sequence": sequence, "file_size": len(data)})
    else:
        click.echo(f"{output}: agent bundle sequence {sequence}, {len(data)} bytes")


@agent_group.command("status")
@socket_option
@timeout_option
@json_option
def status(socket_path: Path, timeout: float, as_json: bool) -> None:
    """Show slots, versions, device class, rollback floor and trial state."""
    _show(AgentClient(socket_path, timeout).status(), as_json)


@agent_group.command("confirm")
@socket_option
@timeout_option
@json_option
def confirm(socket_path: Path, timeout: float, as_json: bool) -> None:
    """Confirm the booted trial image; the rollback floor rises to its sequence number."""
    _show(AgentClient(socket_path, timeout).confirm(), as_json)


@agent_group.command("mark-good")
@socket_option
@timeout_option
@click.option("--wait", "wait", type=click.FloatRange(0, 3600), default=300, show_default=True,
              metavar="SECONDS",
              help="How long to wait for the agent's socket (it records the boot first).")
@json_option
def mark_good(socket_path: Path, timeout: float, wait: float, as_json: bool) -> None:
    """After boot, through the running agent (the mark-good unit): confirm the running slot
    if it is the trial the agent's record of this boot found healthy (the floor rises); do
    nothing if it runs the confirmed image; exit 12 if it runs neither (a trial rejected
    at this boot: rebooting runs the confirmed image)."""
    client = AgentClient(socket_path, timeout)
    deadline = time.monotonic() + wait
    while True:
        try:
            before = client.status()
            break
        except IpcError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)
    running = before.slots[before.running_slot]
    if running.state == "trial":
        after = client.confirm()
        message = (f"trial slot {before.running_slot} confirmed; floor "
                   f"{after.rollback_floor}")
    elif running.state == "confirmed":
        after, message = before, f"slot {before.running_slot} runs its confirmed image"
    else:
        raise DeviceStateError(f"slot {before.running_slot} runs but is {running.state}: "
                               "reboot to run the confirmed image")
    if as_json:
        emit_json({"confirmed": running.state == "trial", "message": message,
                   "status": after.to_json()})
    else:
        click.echo(message)
        click.echo(f"slot {after.running_slot} {after.slots[after.running_slot].state} "
                   f"sequence {after.running_sequence} floor {after.rollback_floor}")


@agent_group.command("reject-trial")
@socket_option
@timeout_option
@json_option
def reject_trial(socket_path: Path, timeout: float, as_json: bool) -> None:
    """Mark the trial image bad; the confirmed image boots next."""
    _show(AgentClient(socket_path, timeout).reject_trial(), as_json)


@agent_group.command("check")
@socket_option
@timeout_option
@json_option
def check(socket_path: Path, timeout: float, as_json: bool) -> int:
    """Re-measure the running slot, the agent bundle and the integrity policy's regions now.
    Exit 16 if any region does not match (each mismatch is logged in secure storage)."""
    report = AgentClient(socket_path, timeout).check()
    bad = [r.region for r in report.results if r.result != "ok"]
    failure = IntegrityError(f"integrity check: {plural(len(bad), 'region')} "
                             f"{'does' if len(bad) == 1 else 'do'} not match: "
                             f"{', '.join(bad)}") if bad else None
    if as_json:  # one document: the report, and the error object when it is a failure
        error = failure and error_object(failure.exit_code, type(failure).__name__,
                                         str(failure))
        emit_json({**report.to_json(), **(error or {})})
        if failure:
            click.echo(f"sfu: error: {failure}", err=True)
            return failure.exit_code
        return 0
    for result in report.results:
        action = "" if result.action == "none" else f" [{result.action}]"
        click.echo(f"{result.result.upper():<9} {result.region:<24} {result.detail}{action}")
    if failure:
        raise failure
    return 0


@agent_group.command("attest")
@click.option("--nonce", required=True, metavar="HEX",
              help=f"{MIN_NONCE} to {MAX_NONCE} bytes in hex, chosen by the verifier.")
@socket_option
@timeout_option
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the token (COSE_Sign1 EAT) here; default: hex on stdout.")
@json_option
def attest(nonce: str, socket_path: Path, timeout: float, output: Path | None,
           as_json: bool) -> None:
    """Ask the agent for an attestation token signed with the device identity key."""
    token = AgentClient(socket_path, timeout).attest(parse_nonce(nonce, "--nonce"))
    if output is not None:
        write_output(output, token)
    if as_json:
        emit_json({"token": token.hex(), "length": len(token),
                   "file": None if output is None else str(output)})
    elif output is None:
        click.echo(token.hex())
    else:
        click.echo(f"{output}: attestation token, {len(token)} bytes", err=True)


@agent_group.command("audit")
@socket_option
@timeout_option
@json_option
def audit(socket_path: Path, timeout: float, as_json: bool) -> None:
    """Show the last remote command number, quarantine, the policy in force, the trust store
    (version, each role's threshold and active anchors) and the event log (newest last)."""
    info = AgentClient(socket_path, timeout).audit()
    if as_json:
        emit_json(info.to_json())
        return
    click.echo(f"last command     {info.last_command}")
    click.echo(f"quarantine       {info.quarantine or ABSENT}")
    policy = ABSENT if info.policy_sequence is None else f"sequence {info.policy_sequence}"
    click.echo(f"integrity policy {policy}")
    click.echo(f"time floor       {info.time_floor}")
    click.echo(f"trust store      version {info.trust_version}")
    for role in info.trust:
        click.echo(f"  {role.role:<9} {role.threshold} of {len(role.anchors)}: "
                   + (", ".join(kid[:16] for kid in role.anchors) or ABSENT))
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
@socket_option
@timeout_option
@json_option
def policy_install(policy_file: Path, socket_path: Path, timeout: float, as_json: bool) -> None:
    """Install a signed integrity policy; the agent checks signature, target and sequence."""
    data = read_bounded(policy_file, MAX_POLICY)
    sequence, regions = AgentClient(socket_path, timeout).install_policy(data)
    if as_json:
        emit_json({"sequence": sequence, "regions": regions})
    else:
        click.echo(f"installed integrity policy {sequence} ({plural(regions, 'region')})")


@click.command("install")
@click.argument("sfui", type=click.Path(path_type=Path, dir_okay=False, exists=True,
                                        allow_dash=True))
@socket_option
@timeout_option
@progress_option
@json_option
def install_cmd(sfui: Path, socket_path: Path, timeout: float, progress_mode: str,
                as_json: bool) -> None:
    """Install an SFUI through the local agent (as a trial; reboot to run it).

    SFUI may be - (stdin), /dev/stdin or another pipe: its length is then unknown to the
    client, and the agent bounds it by what the envelope declares."""
    client = AgentClient(socket_path, timeout)
    with _open_sfui(sfui) as f:
        size = _known_size(f)
        with progress(progress_mode, "installing", sized=size is not None) as report:
            result = client.install(_read_chunks(f), size=size, progress=report)
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
    else:
        show_device_status(status.to_json())

"""What commands share, so that every command speaks with one voice (docs/cli.md, "Shared
vocabulary"): `--json` and the JSON error object, `--progress`, `--socket` and `--timeout`,
hex and nonce arguments, absent values, plurals, bounded file input and file output.

No command module imports another: what two command groups share lives here."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

import click

from sfupdate.errors import UsageError
from sfupdate.formats.ipc.framing import DEFAULT_TIMEOUT
from sfupdate.progress import Progress as ProgressCallback
from sfupdate.progress import no_progress

F = TypeVar("F", bound=Callable[..., Any])

#: How an absent value (no trial, no version, no policy...) is shown in text; JSON has null.
ABSENT: Final = "-"
MIB: Final = 1024 * 1024
PROGRESS_MODES: Final = ("auto", "lines", "json", "none")


def _remember_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """Tell `sfupdate.cli.main.main` (through the context object it passes) that a failure
    must also be reported as JSON. Eager: set before any other option can fail."""
    if value and isinstance(ctx.obj, dict):
        ctx.obj["json"] = True
    return value


def json_option(f: F) -> F:
    """`--json`: the result as JSON on stdout; on failure, the JSON error object."""
    return click.option("--json", "as_json", is_flag=True, is_eager=True,
                        callback=_remember_json,
                        help="Machine-readable output on stdout (on failure: "
                             '{"error": {...}}, see docs/cli.md).')(f)


def progress_option(f: F) -> F:
    """`--progress MODE` for commands that stream an image."""
    return click.option("--progress", "progress_mode", type=click.Choice(PROGRESS_MODES),
                        default="auto", show_default=True,
                        help="auto: a bar on a terminal, nothing otherwise; lines: a line "
                             "on stderr every 10%; json: JSON progress events on stderr "
                             "(docs/cli.md); none.")(f)


#: `--socket PATH` and `--timeout SECONDS`, the same in every command that talks to the agent.
socket_option = click.option("--socket", "socket_path", required=True, metavar="PATH",
                             type=click.Path(path_type=Path, dir_okay=False),
                             help="The agent's Unix socket.")
timeout_option = click.option("--timeout", type=click.FloatRange(min=0.1), metavar="SECONDS",
                              default=DEFAULT_TIMEOUT, show_default=True,
                              help="Seconds to wait for each message from the agent.")


def target_options(f: F) -> F:
    """`--device-key`, or `--vendor` and `--class`: the device or the class a signed command,
    policy or trust update is for (sfupdate.authoring.operator.target_for reads them)."""
    existing = click.Path(path_type=Path, dir_okay=False, exists=True)
    f = click.option("--class", "klass", help="Target a device class: class name or UUID.")(f)
    f = click.option("--vendor", help="Target a device class: vendor name (domain) or UUID.")(f)
    return click.option("--device-key", type=existing, help="Target one device: its identity "
                        "public key (device-id.pub.pem).")(f)


def error_object(code: int, kind: str, message: str) -> dict[str, Any]:
    """The JSON error object of docs/cli.md: exit code, error class name, the message."""
    return {"error": {"code": code, "class": kind, "message": message}}


def parse_hex(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise UsageError(f"{what} must be hexadecimal") from None


def parse_nonce(text: str, what: str) -> bytes:
    """An attestation nonce: hex, of the length RFC 9711 allows (a usage error otherwise)."""
    from sfupdate.formats.ipc.messages import MAX_NONCE, MIN_NONCE  # not for every command

    nonce = parse_hex(text, what)
    if not MIN_NONCE <= len(nonce) <= MAX_NONCE:
        raise UsageError(f"{what} must be {MIN_NONCE} to {MAX_NONCE} bytes ({2 * MIN_NONCE} "
                         f"to {2 * MAX_NONCE} hex digits), not {len(nonce)}")
    return nonce


def read_bounded(path: Path, limit: int) -> bytes:
    """A small input file (a signed command, a token...), refused beyond `limit` bytes."""
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"{path} is larger than {limit} bytes")
    return data


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


def shown(value: object) -> str:
    """A value for text output: ABSENT for None."""
    return ABSENT if value is None else str(value)


def plural(count: int, word: str, words: str | None = None) -> str:
    """'1 region', '2 regions' ('1 entry', '2 entries' with `words`)."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def write_output(path: Path, data: bytes) -> None:
    """Write a command's output file; a failure (disk full...) names the file (exit 2)."""
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


@contextmanager
def progress(mode: str, phase: str, sized: bool = True) -> Iterator[ProgressCallback]:
    """The progress callback for `--progress MODE` while `phase` (signing, installing...)
    runs. `sized`: whether the total is known (not for an SFUI read from a pipe)."""
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "none"
    if mode == "bar":
        with _bar(phase) as bar:
            yield bar
    elif mode == "lines":
        yield _lines(phase, sized)
    elif mode == "json":
        yield _json_events(phase, sized)
    else:
        yield no_progress


@contextmanager
def _bar(phase: str) -> Iterator[ProgressCallback]:
    """A rich progress bar on stderr, in binary units (MiB) like every other sfu output."""
    # Imported here: rich costs more start-up time than most commands take otherwise.
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  DownloadColumn(binary_units=True), TransferSpeedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(phase, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _step(sized: bool, steps: int) -> Callable[[int, int], int]:
    """Which step of the progress `done` is in: 1/`steps` of the total, or the MiB when the
    total is unknown; a report is made each time the step changes."""
    if sized:
        return lambda done, total: done * steps // total if total else steps
    return lambda done, total: done // MIB


def _lines(phase: str, sized: bool) -> ProgressCallback:
    step, last = _step(sized, 10), -1

    def report(done: int, total: int) -> None:
        nonlocal last
        if step(done, total) != last:
            last = step(done, total)
            if sized:
                click.echo(f"sfu: {phase}: {last * 10}% ({done / MIB:.1f} of "
                           f"{total / MIB:.1f} MiB)", err=True)
            else:
                click.echo(f"sfu: {phase}: {done / MIB:.1f} MiB", err=True)

    return report


def _json_events(phase: str, sized: bool) -> ProgressCallback:
    """One JSON object per line on stderr, at each 1 % (each MiB when the total is unknown):
    {"event": "progress", "phase", "done", "total"} (total null when unknown)."""
    step, last = _step(sized, 100), -1

    def report(done: int, total: int) -> None:
        nonlocal last
        if step(done, total) != last:
            last = step(done, total)
            event = {"event": "progress", "phase": phase, "done": done,
                     "total": total if sized else None}
            click.echo(json.dumps(event, sort_keys=True), err=True)

    return report


def show_device_status(status: dict[str, Any]) -> None:
    """The text form of a device status in the `sfu agent status --json` shape, which
    `sfu board status --json` shares (a slot may add its "version")."""
    click.echo(f"vendor-id        {status['vendor_id']}")
    click.echo(f"class-id         {status['class_id']}")
    click.echo(f"running          slot {status['running_slot']}, sequence "
               f"{status['running_sequence']}")
    click.echo(f"rollback floor   {status['rollback_floor']}")
    if status["trial_slot"] is None:
        click.echo(f"trial            {ABSENT}")
    else:
        click.echo(f"trial            slot {status['trial_slot']}, "
                   f"{plural(status['trial_tries_left'], 'try', 'tries')} left")
    for name, slot in sorted(status["slots"].items()):
        version = f"version {shown(slot['version']):<10} " if "version" in slot else ""
        digest = slot["digest"][:16] if slot["digest"] else ABSENT
        click.echo(f"slot {name}           {slot['state']:<10} sequence "
                   f"{shown(slot['sequence']):<6} {version}sha256 {digest}")
        for part in slot.get("components", ()):  # a set (the board's status shows them)
            click.echo(f"  {part['name']:<15}{'':<10} sequence {part['sequence']:<6} "
                       f"sha256 {part['digest'][:16]}")

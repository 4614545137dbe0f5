"""Delivery commands: `sfu repo ...`, `sfu serve`, `sfu client ...`."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click

from sfupdate.cli.render import emit_json, progress_bar
from sfupdate.errors import UsageError
from sfupdate.ipc.client import AgentClient
from sfupdate.progress import Progress

# sfupdate.client (tuf, httpx) and sfupdate.repo (tuf, securesystemslib) are imported by the
# commands that use them: registering these commands (which `sfu client remote` also needs)
# stays cheap.
if TYPE_CHECKING:
    from sfupdate.client import Agent, RepositoryIndex, Source, TransferPolicy

EXIT_UPDATE_AVAILABLE: Final = 100
MIB: Final = 1024 * 1024

_dir = click.Path(path_type=Path, file_okay=False)
_existing_dir = click.Path(path_type=Path, file_okay=False, exists=True)
_existing = click.Path(path_type=Path, dir_okay=False, exists=True)


def register(group: click.Group) -> None:
    group.add_command(repo_group)
    group.add_command(serve)
    group.add_command(client_group)


# --- repository ------------------------------------------------------------------------------


@click.group("repo")
def repo_group() -> None:
    """Publish SFUIs in a static repository with a signed index."""


@repo_group.command("init")
@click.argument("directory", type=_dir)
@click.option("--key", "key_file", type=_existing, required=True,
              help="Private key that signs the index (every role, for now).")
@click.option("--firmware-key", "firmware_keys", type=_existing, multiple=True, required=True,
              help="Public key SFUIs must be signed with to be added (repeatable); kept in "
                   "the repository's configuration.")
@click.option("--expires-days", type=click.IntRange(1, 3650), default=7, show_default=True,
              help="How long each publish of the index stays valid; republish before.")
def repo_init(directory: Path, key_file: Path, firmware_keys: tuple[Path, ...],
              expires_days: int) -> None:
    """Create an empty repository in DIRECTORY."""
    from sfupdate.keys import load_public_key
    from sfupdate.repo import Repository

    trusted = [load_public_key(path) for path in firmware_keys]
    Repository.init(directory, key_file, trusted, expires_days)
    click.echo(f"{directory}: repository created; give devices "
               f"{directory / 'metadata' / '1.root.json'} as their trusted root")


@repo_group.command("add")
@click.argument("directory", type=_existing_dir)
@click.argument("sfuis", type=_existing, nargs=-1, required=True)
@click.option("--trust", "trust", type=_existing, multiple=True,
              help="Also accept SFUIs signed with this public key, for this add only "
                   "(repeatable).")
@click.option("--replace", is_flag=True,
              help="Withdraw an image with the same name, or the same vendor, class and "
                   "sequence, in the same publish.")
def repo_add(directory: Path, sfuis: tuple[Path, ...], trust: tuple[Path, ...],
             replace: bool) -> None:
    """Verify SFUIs completely (signature with the repository's firmware keys, payload size
    and digest) and stage them for the next publish."""
    from sfupdate.keys import load_public_key
    from sfupdate.repo import Repository

    repo = Repository(directory)
    trusted = [load_public_key(path) for path in trust]
    for sfui in sfuis:
        entry = repo.add(sfui, trusted, replace)
        click.echo(f"staged {entry.name}: sequence {entry.sequence}"
                   + (f" (version {entry.version})" if entry.version else "")
                   + f", {entry.length} bytes, class {entry.class_id}")
    click.echo(f"run `sfu repo publish {directory}` to make them visible")


@repo_group.command("remove")
@click.argument("directory", type=_existing_dir)
@click.argument("names", nargs=-1, required=True)
def repo_remove(directory: Path, names: tuple[str, ...]) -> None:
    """Withdraw images (by the NAME `sfu repo list` shows) at the next publish."""
    from sfupdate.repo import Repository

    repo = Repository(directory)
    for name in names:
        entry = repo.remove(name)
        click.echo(f"staged the removal of {entry.name} (sequence {entry.sequence})")
    click.echo(f"run `sfu repo publish {directory}` to withdraw them from the index")


@repo_group.command("list")
@click.argument("directory", type=_existing_dir)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def repo_list(directory: Path, as_json: bool) -> None:
    """List the published images and the changes staged for the next publish."""
    from sfupdate.repo import Repository

    rows = Repository(directory).listing()
    if as_json:
        emit_json([row.to_json() for row in rows])
        return
    if not rows:
        click.echo(f"{directory}: no images")
    for row in rows:
        e = row.entry
        click.echo(f"{e.name:<24} sequence {e.sequence:<6} version {e.version or '-':<10} "
                   f"{e.length:>10} bytes  class {e.class_id}  {row.state}")


@repo_group.command("publish")
@click.argument("directory", type=_existing_dir)
def repo_publish(directory: Path) -> None:
    """Sign and publish the index (also renews its expiry)."""
    from sfupdate.repo import Repository

    repo = Repository(directory)
    version = repo.publish()
    count = len(repo.published().targets)
    click.echo(f"{directory}: published index version {version} ({count} images)")


@click.command()
@click.argument("directory", type=_existing_dir)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="0 picks a free port.")
def serve(directory: Path, host: str, port: int) -> None:
    """Serve DIRECTORY over HTTP for development (production: any static server)."""
    from sfupdate.repo import RepoServer

    try:
        server = RepoServer(directory, host, port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    click.echo(f"serving {directory} at {server.url} (Ctrl-C stops)", err=True)
    sys.stderr.flush()
    try:
        server.serve_forever()
    finally:
        server.server_close()


# --- client ----------------------------------------------------------------------------------


@click.group("client")
def client_group() -> None:
    """The device-side client: check for and install updates through the agent."""


def _state_dir(repo: str, given: Path | None) -> Path:
    if given is not None:
        return given
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "sfupdate" / "repos" / hashlib.sha256(repo.encode()).hexdigest()[:16]


def _source(repo: str, policy: TransferPolicy) -> Source:
    from sfupdate.client import FileSource, HttpSource

    if repo.startswith(("http://", "https://")):
        return HttpSource(repo, policy.connect_timeout, policy.read_timeout)
    return FileSource(Path(repo))


def _log(line: str) -> None:
    click.echo(f"sfu: {line}", err=True)


def _index(repo: str, trusted_root: Path | None, state_dir: Path | None) -> RepositoryIndex:
    from sfupdate.client import RepositoryIndex, TransferPolicy

    policy = TransferPolicy()
    return RepositoryIndex(_source(repo, policy), _state_dir(repo, state_dir), trusted_root,
                           policy, _log)


def _agent(socket: Path) -> Agent:
    """The real agent, over its socket: the only way the client reaches the device."""
    return AgentClient(socket)


@contextmanager
def _transfer_progress(description: str, sized: bool = True) -> Iterator[Progress]:
    """A bar on a terminal; otherwise a plain line at every 10 % (every MiB when the total
    is not known: an SFUI read from a pipe)."""
    if sys.stderr.isatty():
        with progress_bar(description) as bar:
            yield bar
        return
    last = -1

    def log(done: int, total: int) -> None:
        nonlocal last
        tenth = done * 10 // total if total else 10
        if tenth != last:
            last = tenth
            _log(f"{description}: {tenth * 10}% ({done / MIB:.1f} of {total / MIB:.1f} MiB)")

    def log_unsized(done: int, total: int) -> None:
        nonlocal last
        if done // MIB != last:
            last = done // MIB
            _log(f"{description}: {done / MIB:.1f} MiB sent")

    yield log if sized else log_unsized


_repo_opt = click.option("--repo", help="Repository URL (http/https) or directory.")
_socket_opt = click.option("--socket", "socket_path", type=click.Path(path_type=Path),
                           required=True, help="The agent's Unix socket.")
_root_opt = click.option("--trusted-root", type=_existing,
                         help="The repository's 1.root.json (needed on first use).")
_state_opt = click.option("--state-dir", type=_dir,
                          help="Where trusted index metadata is kept between runs "
                               "(default: ~/.local/state/sfupdate/repos/<hash of --repo>).")


@client_group.command("check")
@_repo_opt
@_socket_opt
@_root_opt
@_state_opt
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def client_check(repo: str | None, socket_path: Path, trusted_root: Path | None,
                 state_dir: Path | None, as_json: bool) -> int:
    """Say whether the repository has a newer image for this device.

    Exit 0: up to date; 100: an update is available; other codes: errors (docs/cli.md).
    """
    from sfupdate.client import check

    if repo is None:
        raise UsageError("--repo is required")
    result = check(_index(repo, trusted_root, state_dir), _agent(socket_path))
    if as_json:
        emit_json(result.to_json())
    elif result.available:
        c = result.available
        click.echo(f"update available: {c.name}, sequence {c.sequence}"
                   + (f" (version {c.version})" if c.version else "")
                   + f", {c.length} bytes; device runs sequence {result.running_sequence}")
    else:
        click.echo(f"up to date: device runs sequence {result.running_sequence} "
                   f"(floor {result.rollback_floor}); nothing newer for its class")
    return EXIT_UPDATE_AVAILABLE if result.available else 0


@client_group.command("update")
@_repo_opt
@click.option("--from", "from_file",
              type=click.Path(path_type=Path, dir_okay=False, exists=True, allow_dash=True),
              help="Install this SFUI from local media instead of a repository; - reads it "
                   "from stdin.")
@_socket_opt
@_root_opt
@_state_opt
def client_update(repo: str | None, from_file: Path | None, socket_path: Path,
                  trusted_root: Path | None, state_dir: Path | None) -> None:
    """Install the newest image for this device, streaming it to the agent as it downloads."""
    from sfupdate.client import install_file, install_stream, update

    if (repo is None) == (from_file is None):
        raise UsageError("give exactly one of --repo and --from")
    agent = _agent(socket_path)
    if from_file is not None and str(from_file) == "-":
        with _transfer_progress("installing", sized=False) as progress:
            installed = install_stream(sys.stdin.buffer, "stdin", agent, progress)
    elif from_file is not None:  # a FIFO or /dev/stdin has no size either
        with _transfer_progress("installing", sized=from_file.is_file()) as progress:
            installed = install_file(from_file, agent, progress)
    else:
        index = _index(repo or "", trusted_root, state_dir)
        with _transfer_progress("updating") as progress:
            result = update(index, agent, progress, _log)
        if result.installed is None:
            click.echo(f"up to date: device runs sequence {result.check.running_sequence}")
            return
        installed = result.installed
    click.echo(f"installed sequence {installed.sequence} into slot {installed.slot} "
               f"(sha-256 {installed.digest[:16]}...); reboot to try it")

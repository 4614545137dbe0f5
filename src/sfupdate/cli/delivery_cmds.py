"""Delivery commands: `sfu repo ...`, `sfu serve`, `sfu client ...`."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click

from sfupdate.cli.key_options import KEY_METAVAR, unlock, unlock_options
from sfupdate.cli.render import (
    ABSENT,
    emit_json,
    error_object,
    json_option,
    plural,
    progress,
    progress_option,
    read_bounded,
    shown,
    socket_option,
    timeout_option,
    write_output,
)
from sfupdate.errors import SfuError, UsageError
from sfupdate.formats.ipc.client import AgentClient
from sfupdate.formats.ipc.messages import MAX_COMMAND

# The client (tuf, httpx) and the repository (tuf, securesystemslib) are imported by the
# commands that use them: registering these commands (which `sfu client remote` also needs)
# stays cheap.
if TYPE_CHECKING:
    from sfupdate.richos.client import Agent, RepositoryIndex, Source, TransferPolicy
    from sfupdate.richos.client.config import ClientConfig

EXIT_UPDATE_AVAILABLE: Final = 100

_dir = click.Path(path_type=Path, file_okay=False)
_existing_dir = click.Path(path_type=Path, file_okay=False, exists=True)
_existing = click.Path(path_type=Path, dir_okay=False, exists=True)
_file = click.Path(path_type=Path, dir_okay=False)


# --- repository ------------------------------------------------------------------------------


@click.group("repo")
def repo_group() -> None:
    """Publish SFUIs in a static repository with a signed index."""


_ROLES = ("root", "targets", "snapshot", "timestamp")  # repo/roles.py ROLES, not imported


@repo_group.command("init")
@click.argument("directory", type=_dir)
@click.option("--key", "key_ref", metavar=KEY_METAVAR,
              help="Key for every role not given its own below (a PEM file or pkcs11: URI).")
@click.option("--root-key", metavar=KEY_METAVAR,
              help="Root role key: signs the trust anchor and key rotations; keep it offline.")
@click.option("--targets-key", metavar=KEY_METAVAR, help="Targets role key: signs the index.")
@click.option("--snapshot-key", metavar=KEY_METAVAR, help="Snapshot role key.")
@click.option("--timestamp-key", metavar=KEY_METAVAR,
              help="Timestamp role key: signs every publish, the shortest-lived metadata.")
@click.option("--firmware-key", "firmware_keys", type=_existing, multiple=True, required=True,
              help="Public key SFUIs must be signed with to be added (repeatable); kept in "
                   "the repository's configuration.")
@click.option("--expires-days", type=click.IntRange(1, 3650), default=7, show_default=True,
              help="How long each publish of the index stays valid; republish before.")
@unlock_options
@json_option
def repo_init(directory: Path, key_ref: str | None, root_key: str | None,
              targets_key: str | None, snapshot_key: str | None, timestamp_key: str | None,
              firmware_keys: tuple[Path, ...], expires_days: int, passphrase_file: Path | None,
              pkcs11_module: str | None, as_json: bool) -> None:
    """Create an empty repository in DIRECTORY.

    The online roles' key references (not root's) are remembered for `sfu repo publish`."""
    from sfupdate.authoring.repo import Repository
    from sfupdate.keys import load_public_key

    given = zip(_ROLES, (root_key, targets_key, snapshot_key, timestamp_key), strict=True)
    role_keys = {role: [chosen] for role, ref in given if (chosen := ref or key_ref)}
    trusted = [load_public_key(path) for path in firmware_keys]
    Repository.init(directory, role_keys, trusted, expires_days,
                    unlock=unlock(passphrase_file, pkcs11_module))
    root = directory / "metadata" / "1.root.json"
    if as_json:
        emit_json({"repository": str(directory), "trusted_root": str(root)})
    else:
        click.echo(f"{directory}: repository created; give devices {root} as their "
                   "trusted root")


_role_key_options = [
    click.option("--key", "role_keys", metavar="ROLE=KEY", multiple=True,
                 help="Sign ROLE (targets, snapshot or timestamp) with KEY, a PEM file or "
                      "pkcs11: URI, instead of the remembered key (repeatable)."),
    click.option("--keys-file", type=_existing,
                 help='JSON {"ROLE": ["KEY", ...]} naming the keys (paths relative to it).'),
]


def _with_role_keys(f: Any) -> Any:
    for option in reversed(_role_key_options):
        f = option(f)
    return unlock_options(f)


def _role_keys(role_keys: tuple[str, ...], keys_file: Path | None) -> dict[str, list[str]]:
    from sfupdate.authoring.repo.roles import parse_role_keys, read_keys_file

    return {**(read_keys_file(keys_file) if keys_file else {}), **parse_role_keys(role_keys)}


@repo_group.command("add")
@click.argument("directory", type=_existing_dir)
@click.argument("sfuis", type=_existing, nargs=-1, required=True)
@click.option("--trust", "trust", type=_existing, multiple=True,
              help="Also accept SFUIs signed with this public key, for this add only "
                   "(repeatable).")
@click.option("--replace", is_flag=True,
              help="Withdraw an image with the same name, or the same vendor, class and "
                   "sequence, in the same publish.")
@click.option("--deltas", type=click.IntRange(0, 16), default=0, show_default=True,
              help="Also sign and stage a delta of each full image from each of its N newest "
                   "predecessors in the repository (needs --key).")
@click.option("--key", "key_ref", metavar=KEY_METAVAR,
              help="The firmware signing key that signs the deltas (a PEM file or a pkcs11: "
                   "URI).")
@unlock_options
@json_option
def repo_add(directory: Path, sfuis: tuple[Path, ...], trust: tuple[Path, ...],
             replace: bool, deltas: int, key_ref: str | None, passphrase_file: Path | None,
             pkcs11_module: str | None, as_json: bool) -> None:
    """Verify SFUIs completely (signature with the repository's firmware keys, payload size
    and digest; a delta is applied to its base image from the repository) and stage them for
    the next publish."""
    from sfupdate.authoring.repo import Repository
    from sfupdate.authoring.repo.deltas import add_deltas
    from sfupdate.formats.sfui import AlgorithmStyle
    from sfupdate.keys import load_public_key, load_signer

    if deltas and key_ref is None:
        raise UsageError("--deltas needs --key, the firmware key that signs the deltas")
    repo = Repository(directory)
    trusted = [load_public_key(path) for path in trust]
    signer = (load_signer(key_ref, AlgorithmStyle.FULLY_SPECIFIED,
                          unlock(passphrase_file, pkcs11_module))
              if deltas and key_ref else None)
    staged: list[dict[str, Any]] = []
    for sfui in sfuis:
        entry = repo.add(sfui, trusted, replace)
        added = [entry]
        if signer is not None and entry.delta_base is None:
            added += add_deltas(repo, entry, deltas, signer, trusted, replace)
        for each in added:
            staged.append(each.to_json())
            if not as_json:
                click.echo(f"staged {each.name}: sequence {each.sequence}"
                           + (f" (version {each.version})" if each.version else "")
                           + f", {each.length} bytes, class {each.class_id}"
                           + (f", delta from sha256:{each.delta_base[:16]}"
                              if each.delta_base else ""))
    if as_json:
        emit_json({"staged": staged})
    else:
        click.echo(f"run `sfu repo publish {directory}` to make them visible")


@repo_group.command("remove")
@click.argument("directory", type=_existing_dir)
@click.argument("names", nargs=-1, required=True)
@json_option
def repo_remove(directory: Path, names: tuple[str, ...], as_json: bool) -> None:
    """Withdraw images (by the NAME `sfu repo list` shows) at the next publish."""
    from sfupdate.authoring.repo import Repository

    repo = Repository(directory)
    removed: list[dict[str, Any]] = []
    for name in names:
        entry = repo.remove(name)
        removed.append(entry.to_json())
        if not as_json:
            click.echo(f"staged the removal of {entry.name} (sequence {entry.sequence})")
    if as_json:
        emit_json({"removal_staged": removed})
    else:
        click.echo(f"run `sfu repo publish {directory}` to withdraw them from the index")


@repo_group.command("list")
@click.argument("directory", type=_existing_dir)
@json_option
def repo_list(directory: Path, as_json: bool) -> None:
    """List the published images and the changes staged for the next publish."""
    from sfupdate.authoring.repo import Repository

    rows = Repository(directory).listing()
    if as_json:
        emit_json([row.to_json() for row in rows])
        return
    if not rows:
        click.echo(f"{directory}: no images")
    for row in rows:
        e = row.entry
        click.echo(f"{e.name:<24} sequence {e.sequence:<6} version {shown(e.version):<10} "
                   f"{e.length:>10} bytes  class {e.class_id}  {row.state}")


@repo_group.command("publish")
@click.argument("directory", type=_existing_dir)
@_with_role_keys
@json_option
def repo_publish(directory: Path, role_keys: tuple[str, ...], keys_file: Path | None,
                 passphrase_file: Path | None, pkcs11_module: str | None,
                 as_json: bool) -> None:
    """Sign and publish the index (also renews its expiry)."""
    from sfupdate.authoring.repo import Repository

    repo = Repository(directory)
    version = repo.publish(keys=_role_keys(role_keys, keys_file),
                           unlock=unlock(passphrase_file, pkcs11_module))
    count = len(repo.published().targets)
    if as_json:
        emit_json({"repository": str(directory), "index_version": version, "images": count})
    else:
        click.echo(f"{directory}: published index version {version} "
                   f"({plural(count, 'image')})")


@repo_group.command("rotate")
@click.argument("directory", type=_existing_dir)
@click.argument("role", type=click.Choice(_ROLES))
@click.option("--new-key", "new_keys", metavar=KEY_METAVAR, multiple=True, required=True,
              help="The role's new key (repeatable: any one of them signs); it replaces all "
                   "of the role's keys.")
@click.option("--root-key", "root_keys", metavar=KEY_METAVAR, multiple=True, required=True,
              help="The current root key, which signs the new root version (repeatable).")
@_with_role_keys
@json_option
def repo_rotate(directory: Path, role: str, new_keys: tuple[str, ...],
                root_keys: tuple[str, ...], role_keys: tuple[str, ...], keys_file: Path | None,
                passphrase_file: Path | None, pkcs11_module: str | None,
                as_json: bool) -> None:
    """Replace ROLE's keys in a new root version signed by the root key; clients follow it.

    A new targets, snapshot or timestamp key is remembered, and the index is republished
    with it at once; a new root key signs its root version too."""
    from sfupdate.authoring.repo import Repository

    repo = Repository(directory)
    version = repo.rotate(role, new_keys, root_keys, _role_keys(role_keys, keys_file),
                          unlock(passphrase_file, pkcs11_module))
    root = directory / "metadata" / f"{version}.root.json"
    if as_json:
        emit_json({"repository": str(directory), "role": role, "root_version": version,
                   "root": str(root)})
    else:
        click.echo(f"{directory}: {role} key rotated; root version {version} ({root})")


@repo_group.command("status")
@click.argument("directory", type=_existing_dir)
@json_option
def repo_status(directory: Path, as_json: bool) -> None:
    """Show each role's keys, threshold, newest version and expiry."""
    from sfupdate.authoring.repo import Repository

    rows = Repository(directory).status()
    if as_json:
        emit_json([row.to_json() for row in rows])
        return
    for row in rows:
        expiry = "never published" if row.expires is None else (
            f"expires {row.expires:%Y-%m-%d %H:%M} UTC ({_left(row.seconds_left or 0)})")
        click.echo(f"{row.role:<10} version {row.version or '-':<5} {expiry}; "
                   f"threshold {row.threshold} of keys {', '.join(k[:16] for k in row.keyids)}")
        for ref in row.remembered:
            click.echo(f"{'':<10} signs with {ref}")


def _left(seconds: int) -> str:
    if seconds < 0:
        return "EXPIRED: publish now"
    days, rest = divmod(seconds, 86400)
    if days:
        return f"in {days} d {rest // 3600} h"
    return f"in {rest // 3600} h {rest % 3600 // 60} min"


@click.command()
@click.argument("directory", type=_existing_dir)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="0 picks a free port.")
def serve(directory: Path, host: str, port: int) -> None:
    """Serve DIRECTORY over HTTP for development (production: any static server)."""
    from sfupdate.authoring.repo import RepoServer

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
@click.option("--config", "config_path", type=_existing, metavar="FILE",
              help="A device configuration (device.toml): its [client] table gives the "
                   "defaults of --repo, --trusted-root, --state-dir and --interval, and its "
                   "[device] socket the default of --socket. Options given win.")
@click.pass_context
def client_group(ctx: click.Context, config_path: Path | None) -> None:
    """The device-side client: check for and install updates through the agent."""
    if config_path is not None:
        from sfupdate.richos.client.config import load_client_config

        ctx.default_map = _command_defaults(load_client_config(config_path))


def _command_defaults(config: ClientConfig) -> dict[str, dict[str, Any]]:
    """click's default map: each client command's option defaults from the configuration."""
    given = {"repo": config.repository, "trusted_root": config.trusted_root,
             "state_dir": config.state_dir, "socket_path": config.socket,
             "interval": config.poll_interval}
    takes = {"check": ("repo", "trusted_root", "state_dir", "socket_path"),
             "update": ("repo", "trusted_root", "state_dir", "socket_path"),
             "status": ("repo", "state_dir"),
             "watch": ("trusted_root", "socket_path", "interval"),
             "ddi": ("socket_path",),
             "remote": ("socket_path",)}
    return {command: {name: given[name] for name in names if given[name] is not None}
            for command, names in takes.items()}


def _state_dir(repo: str, given: Path | None) -> Path:
    if given is not None:
        return given
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "sfupdate" / "repos" / hashlib.sha256(repo.encode()).hexdigest()[:16]


def _source(repo: str, policy: TransferPolicy) -> Source:
    from sfupdate.richos.client import open_source

    return open_source(repo, policy.connect_timeout, policy.read_timeout)


def _log(line: str) -> None:
    click.echo(f"sfu: {line}", err=True)


def _index(repo: str, trusted_root: Path | None, state_dir: Path | None) -> RepositoryIndex:
    from sfupdate.richos.client import RepositoryIndex, TransferPolicy

    policy = TransferPolicy()
    return RepositoryIndex(_source(repo, policy), _state_dir(repo, state_dir), trusted_root,
                           policy, _log)


def _agent(socket: Path, timeout: float) -> Agent:
    """The real agent, over its socket: the only way the client reaches the device."""
    return AgentClient(socket, timeout)


_repo_opt = click.option("--repo", metavar="URL|DIR",
                         help="Repository: an http(s)://, tftp://, ftp:// or file:// URL, or "
                              "a directory.")
_root_opt = click.option("--trusted-root", type=_existing, metavar="FILE",
                         help="The repository's 1.root.json, obtained out of band: needed on "
                              "first use; later, checked against the stored root (a "
                              "different one replaces it).")
_state_opt = click.option("--state-dir", type=_dir, metavar="DIR",
                          help="Where trusted index metadata is kept between runs "
                               "(default: $XDG_STATE_HOME, or ~/.local/state, then "
                               "sfupdate/repos/<hash of --repo>; `sfu client status` shows "
                               "it).")


@client_group.command("check")
@_repo_opt
@socket_option
@_root_opt
@_state_opt
@timeout_option
@json_option
def client_check(repo: str | None, socket_path: Path, trusted_root: Path | None,
                 state_dir: Path | None, timeout: float, as_json: bool) -> int:
    """Say whether the repository has a newer image for this device.

    Exit 0: up to date; 100: an update is available; other codes: errors (docs/cli.md).
    """
    from sfupdate.richos.client import check

    if repo is None:
        raise UsageError("--repo is required")
    result = check(_index(repo, trusted_root, state_dir), _agent(socket_path, timeout))
    if as_json:
        emit_json(result.to_json())
    elif result.available:
        c = result.available
        click.echo(f"update available: {c.name}, sequence {c.sequence}"
                   + (f" (version {c.version})" if c.version else "")
                   + f", {c.length} bytes; device runs sequence {result.running_sequence}")
    else:
        click.echo(f"up to date: device runs sequence {result.running_sequence} "
                   f"(rollback floor {result.rollback_floor}); nothing newer for its class")
    return EXIT_UPDATE_AVAILABLE if result.available else 0


@client_group.command("update")
@_repo_opt
@click.option("--from", "from_file", metavar="FILE|-",
              type=click.Path(path_type=Path, dir_okay=False, exists=True, allow_dash=True),
              help="Install this SFUI from local media instead of a repository; - reads it "
                   "from stdin.")
@socket_option
@_root_opt
@_state_opt
@timeout_option
@progress_option
@json_option
def client_update(repo: str | None, from_file: Path | None, socket_path: Path,
                  trusted_root: Path | None, state_dir: Path | None, timeout: float,
                  progress_mode: str, as_json: bool) -> None:
    """Install the newest image for this device, streaming it to the agent as it downloads."""
    from sfupdate.richos.client import install_file, install_stream, update

    if (repo is None) == (from_file is None):
        raise UsageError("give exactly one of --repo and --from")
    agent = _agent(socket_path, timeout)
    out: dict[str, Any] = {}
    if from_file is not None and str(from_file) == "-":
        with progress(progress_mode, "installing", sized=False) as report:
            installed = install_stream(sys.stdin.buffer, "stdin", agent, report)
    elif from_file is not None:  # a FIFO or /dev/stdin has no size either
        with progress(progress_mode, "installing", sized=from_file.is_file()) as report:
            installed = install_file(from_file, agent, report)
    else:
        index = _index(repo or "", trusted_root, state_dir)
        with progress(progress_mode, "updating") as report:
            result = update(index, agent, report, _log)
        out = {"check": result.check.to_json(), "saved_bytes": result.saved,
               "skipped": [{"name": s.candidate.name, "sequence": s.candidate.sequence,
                            **error_object(s.error.exit_code, type(s.error).__name__,
                                           str(s.error))} for s in result.skipped]}
        if result.installed is None:
            if as_json:
                emit_json({"installed": None, **out})
            else:
                click.echo(f"up to date: device runs sequence "
                           f"{result.check.running_sequence}")
            return
        installed = result.installed
    if as_json:
        emit_json({"installed": {"slot": installed.slot, "sequence": installed.sequence,
                                 "digest": installed.digest}, **out})
    else:
        click.echo(f"installed sequence {installed.sequence} into slot {installed.slot} as a "
                   f"trial (sha256 {installed.digest}); reboot to run it")


@client_group.command("status")
@_repo_opt
@_state_opt
@json_option
def client_status(repo: str | None, state_dir: Path | None, as_json: bool) -> None:
    """Show where the client keeps what it trusts for a repository (its state directory),
    and the root and index versions stored there. To start over, delete that directory or
    pass another --trusted-root."""
    from sfupdate.richos.client.state import describe

    if repo is None and state_dir is None:
        raise UsageError("give --repo (or --state-dir)")
    report = describe(_state_dir(repo or "", state_dir))
    if as_json:
        emit_json({"repo": repo, **report.to_json()})
        return
    click.echo(f"state directory  {report.state_dir}")
    if report.root is None:
        click.echo(f"trusted root     {ABSENT} (nothing trusted yet: the next run needs "
                   "--trusted-root)")
    else:
        click.echo(f"trusted root     version {report.root.version}, expires "
                   f"{report.root.expires}")
    index = report.index
    click.echo("index            " + (ABSENT if index is None else
                                     f"version {index.version}, expires {index.expires}"))


@client_group.command("remote")
@click.argument("command_file", type=_existing)
@socket_option
@timeout_option
@click.option("-o", "--output", type=_file,
              help="Write the device's answer (an attestation token) here.")
@json_option
def client_remote(command_file: Path, socket_path: Path, timeout: float, output: Path | None,
                  as_json: bool) -> None:
    """Carry a signed remote command to the agent and its answer back. The agent checks the
    operator's signature, the target, the command number and the expiry."""
    result = AgentClient(socket_path, timeout).remote(read_bounded(command_file, MAX_COMMAND))
    if output is not None:
        write_output(output, result.token)
    if as_json:
        emit_json(result.to_json())
    else:
        click.echo(f"{result.action} (command {result.number}): {result.message}")


@client_group.command("trust")
@click.argument("update_file", type=_existing)
@socket_option
@timeout_option
@json_option
def client_trust(update_file: Path, socket_path: Path, timeout: float, as_json: bool) -> None:
    """Carry a signed trust update to the agent. It checks the target, the version and that
    each changed role's current threshold of anchors signed, then applies it in one write."""
    from sfupdate.formats.remote.trust import MAX_UPDATE_SIZE

    data = read_bounded(update_file, MAX_UPDATE_SIZE)
    version, message = AgentClient(socket_path, timeout).update_trust(data)
    if as_json:
        emit_json({"version": version, "message": message})
    else:
        click.echo(f"trust update applied: {message}")


# --- local media -----------------------------------------------------------------------------

EXIT_WATCH_TIMEOUT: Final = 124  # as timeout(1): --max-wait passed and nothing appeared


@client_group.command("watch")
@click.argument("directory", type=_dir)
@socket_option
@_root_opt
@click.option("--state-dir", type=_dir, metavar="DIR",
              help="Where the digests of images already installed (and the repository's "
                   "trusted index) are kept (default: $XDG_STATE_HOME, or ~/.local/state, "
                   "then sfupdate/watch).")
@click.option("--interval", type=click.FloatRange(0.05, 3600), default=2.0, show_default=True,
              metavar="SECONDS", help="Seconds between two looks at DIRECTORY.")
@click.option("--once", is_flag=True,
              help="Stop after the first image installed or refused.")
@click.option("--max-wait", type=click.FloatRange(0, None), metavar="SECONDS",
              help="Stop after this many seconds (exit 124 if nothing appeared).")
@timeout_option
@json_option
def client_watch(directory: Path, socket_path: Path, trusted_root: Path | None,
                 state_dir: Path | None, interval: float, once: bool,
                 max_wait: float | None, timeout: float, as_json: bool) -> int:
    """Wait for an SFUI or a static repository under DIRECTORY (a mount point) and install
    it, once: an image installed or refused before is not offered again.

    The exit code is the last image's: 0 installed, or its error's code; 124 when --max-wait
    passed with nothing new.
    """
    from sfupdate.richos.client.watch import Outcome, Watcher, watch

    if state_dir is None:
        base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        state_dir = base / "sfupdate" / "watch"

    def report(outcome: Outcome) -> None:
        if as_json:
            if not outcome.up_to_date and not (once and outcome.error):
                emit_json(_outcome_json(outcome))
        elif outcome.installed is not None:
            i = outcome.installed
            click.echo(f"{outcome.item}: installed sequence {i.sequence} into slot {i.slot} "
                       f"as a trial (sha256 {i.digest}); reboot to run it")
        elif outcome.error is not None and not once:  # --once: the error line below
            _log(f"{outcome.item}: not installed: {outcome.error}")

    watcher = Watcher(directory, _agent(socket_path, timeout), state_dir, trusted_root,
                      log=_log)
    _log(f"watching {directory} every {interval:g} s")
    acted = watch(watcher, interval, once, max_wait, report)
    if not acted:
        _log(f"nothing new under {directory} after {max_wait:g} s")
        return EXIT_WATCH_TIMEOUT
    error = acted[-1].error
    if error is not None and once:
        raise error
    return error.exit_code if error is not None else 0


def _outcome_json(outcome: Any) -> dict[str, Any]:
    """`client watch --json`: one object per image installed or refused."""
    i, e = outcome.installed, outcome.error
    return {"item": str(outcome.item), "kind": outcome.kind,
            "installed": None if i is None else {"slot": i.slot, "sequence": i.sequence,
                                                 "digest": i.digest},
            **(error_object(e.exit_code, type(e).__name__, str(e)) if e else {"error": None})}


# --- a fleet server (hawkBit DDI) -------------------------------------------------------------


def _attribute(_ctx: click.Context, _param: click.Parameter,
               values: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise UsageError(f"--attribute {value!r}: expected KEY=VALUE")
        pairs[key] = text
    return pairs


@client_group.command("ddi")
@click.option("--server", required=True, metavar="URL",
              help="The DDI server's base URL (http or https).")
@click.option("--tenant", default="DEFAULT", show_default=True, metavar="NAME",
              help="The tenant the device belongs to on the server.")
@click.option("--controller-id", required=True, metavar="ID",
              help="This device's id on the server.")
@click.option("--token", envvar="SFU_DDI_TOKEN", metavar="TOKEN",
              help="Security token (or the SFU_DDI_TOKEN environment variable).")
@click.option("--token-type", type=click.Choice(["target", "gateway"]), default="target",
              show_default=True, help="A TargetToken (this device's) or a GatewayToken.")
@click.option("--attribute", "attributes", multiple=True, callback=_attribute,
              metavar="KEY=VALUE",
              help="Extra config data KEY=VALUE sent to the server (repeatable), e.g. "
                   "hw_revision=2.")
@socket_option
@click.option("--state-dir", type=_dir, metavar="DIR",
              help="Where the action on trial and the config data sent are kept between "
                   "runs (default: $XDG_STATE_HOME, or ~/.local/state, then "
                   "sfupdate/ddi/<hash of server, tenant, id>).")
@click.option("--once", is_flag=True, help="Poll once and exit, instead of polling forever.")
@timeout_option
@json_option
def client_ddi(server: str, tenant: str, controller_id: str, token: str | None,
               token_type: str, attributes: dict[str, str], socket_path: Path,
               state_dir: Path | None, once: bool, timeout: float, as_json: bool) -> None:
    """Take updates from a fleet server's hawkBit DDI API (gooseBit, hawkBit...): poll at the
    server's interval, install what it deploys through the agent, report the result.

    The server only proposes: the agent verifies every image. With --once, the exit code is
    0, or the code of the install's error (after it was reported to the server).
    """
    import time

    from sfupdate.richos.client.ddi import DdiClient, DdiConfig

    config = DdiConfig(server, tenant, controller_id, token, token_type, attributes)
    if state_dir is None:
        key = hashlib.sha256(f"{server}\0{tenant}\0{controller_id}".encode()).hexdigest()[:16]
        base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        state_dir = base / "sfupdate" / "ddi" / key
    client = DdiClient(config, AgentClient(socket_path, timeout), state_dir, log=_log)
    try:
        while True:
            try:
                cycle = client.cycle()
            except SfuError as exc:  # server or agent unreachable: polled again later
                if once:
                    raise
                _log(f"{exc}; polling again in 60 s")
                time.sleep(60)
                continue
            if as_json:
                if (cycle.error is None) if once else not cycle.idle:  # --once: main's error
                    emit_json(_cycle_json(cycle))
            elif cycle.installed is not None:
                i = cycle.installed
                click.echo(f"installed sequence {i.sequence} into slot {i.slot} as a trial "
                           f"(sha256 {i.digest}); reboot to run it")
            elif cycle.message and cycle.error is None and (once or not cycle.idle):
                _log(cycle.message)
            if cycle.final and not as_json:
                click.echo(f"reported the trial's result to the server: {cycle.final}")
            if once:
                if cycle.error is not None:
                    raise cycle.error
                return
            time.sleep(cycle.sleep)
    finally:
        client.close()


def _cycle_json(cycle: Any) -> dict[str, Any]:
    """`client ddi --json`: one object per poll (with --once) or per poll that did something."""
    i, e = cycle.installed, cycle.error
    return {"installed": None if i is None else {"slot": i.slot, "sequence": i.sequence,
                                                 "digest": i.digest},
            "reported": cycle.final, "message": cycle.message, "next_poll": cycle.sleep,
            **(error_object(e.exit_code, type(e).__name__, str(e)) if e else {"error": None})}

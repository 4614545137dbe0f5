"""Entry point: the `sfu` group, and the one place errors become exit codes.

Every deliberate error (`sfupdate.errors.SfuError`) prints one line on stderr,
`sfu: error: <what happened>`, and exits with the code documented in docs/cli.md. A command
run with `--json` also prints the error object on stdout: `{"error": {"code", "class",
"message"}}`. `sfu` (or a group such as `sfu client`) alone prints its help and exits 0.

Start-up: this module imports only click and `sfupdate.errors`. The command modules (and with
them tuf, httpx, rich, cryptography) are imported when a command of theirs is invoked or its
help is asked for; see `LazyGroup` and tests/test_startup_imports.py. The table `COMMANDS` is
also the one place a command group gets a subcommand another module defines.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

import click

from sfupdate import __version__
from sfupdate.errors import SfuError

EXIT_INTERRUPTED = 130
EXIT_IO = 2


class Lazy(NamedTuple):
    """Where a top-level command comes from, and what `sfu --help` says about it."""

    #: "module:attribute": the click command, in `sfupdate.cli.<module>`.
    command: str
    #: The first paragraph of the command's help (its docstring).
    help: str
    #: Subcommands another module defines, added to this group here and nowhere else
    #: ("module:attribute" each): no command module extends another's group.
    subcommands: tuple[str, ...] = ()


def load(reference: str) -> click.Command:
    """The click command a "module:attribute" reference names (importing its module)."""
    module, attribute = reference.split(":")
    command = getattr(importlib.import_module(f"sfupdate.cli.{module}"), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{reference} is not a click command")
    return command


class LazyGroup(click.Group):
    """A click group whose commands are imported only when needed.

    `lazy` names every command with where it lives and its one-line help: `sfu --help` lists
    them all from the table alone; invoking a command, or asking for its help, imports just its
    module (and those of the subcommands the table adds to it). The table must match the
    commands (tests/test_startup_imports.py checks names and help).
    """

    def __init__(self, *args: Any, lazy: Mapping[str, Lazy], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = self.lazy.get(cmd_name)
        if entry is not None and cmd_name not in self.commands:
            command = load(entry.command)
            for reference in entry.subcommands:
                if not isinstance(command, click.Group):
                    raise TypeError(f"{entry.command} has no subcommands")
                command.add_command(load(reference))
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click's, but a command not yet imported is described by its table entry."""
        rows: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name) or click.Command(name, help=self.lazy[name].help)
            if not command.hidden:
                rows.append((name, command))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in rows])


COMMANDS: Mapping[str, Lazy] = {
    "keys": Lazy("author_cmds:keys_group",
                 "Create signing keys and export their public halves.",
                 subcommands=("encryption_cmds:generate_kek",)),
    "sign": Lazy("author_cmds:sign",
                 "Sign FIRMWARE (or several --component NAME=FILE) into a Secured Firmware "
                 "Update Image (SUIT envelope)."),
    "inspect": Lazy("author_cmds:inspect",
                    "Show what an SFUI says, WITHOUT checking its signature."),
    "verify": Lazy("author_cmds:verify",
                   "Check that an SFUI is authentic and complete; exit 0 only then."),
    "agent": Lazy("agent_cmds:agent_group", "Run the SFU Agent, or talk to a running one."),
    "install": Lazy("agent_cmds:install_cmd",
                    "Install an SFUI through the local agent (as a trial; reboot to run it)."),
    "board": Lazy("board_cmds:board_group",
                  "Simulated board: create, provision, boot, confirm, status; `linux` devices.",
                  subcommands=("device_cmds:linux_group", "encryption_cmds:encryption_key")),
    "repo": Lazy("delivery_cmds:repo_group",
                 "Publish SFUIs in a static repository with a signed index."),
    "serve": Lazy("delivery_cmds:serve",
                  "Serve DIRECTORY over HTTP for development (production: any static server)."),
    "client": Lazy("delivery_cmds:client_group",
                   "The device-side client: check for and install updates through the agent."),
    "remote": Lazy("operator_cmds:remote_group",
                   "Operator side: sign remote commands and integrity policies for devices.",
                   subcommands=("trust_cmds:trust_sign", "trust_cmds:trust_cosign")),
    "attest": Lazy("operator_cmds:attest_group",
                   "Operator side: verify attestation tokens from devices."),
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sfu")
def cli() -> None:
    """sfupdate: secure firmware update with SUIT envelopes."""


def _fail(invocation: dict[str, bool], code: int, kind: str, message: str) -> int:
    """The exit code of a failure whose line is on stderr; with `--json` (the option's
    callback sets invocation["json"]: sfupdate.cli.render.json_option), the JSON error object
    on stdout too."""
    if invocation["json"]:
        from sfupdate.cli.render import error_object  # not at start-up: `sfu --version`

        click.echo(json.dumps(error_object(code, kind, message), sort_keys=True))
    return code


def main(argv: list[str] | None = None) -> int:
    invocation = {"json": False}
    try:
        result = cli.main(args=argv, prog_name="sfu", standalone_mode=False, obj=invocation)
    except SfuError as exc:
        click.echo(f"sfu: error: {exc}", err=True)
        return _fail(invocation, exc.exit_code, type(exc).__name__, str(exc))
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("sfu: interrupted", err=True)
        return _fail(invocation, EXIT_INTERRUPTED, "Interrupted", "interrupted")
    except click.exceptions.NoArgsIsHelpError as exc:  # `sfu`, `sfu client`: asking for help
        click.echo(exc.format_message())
        return 0
    except click.ClickException as exc:  # click's usage errors: one line too, exit 2
        message = exc.format_message()
        command = exc.ctx.command_path if isinstance(exc, click.UsageError) and exc.ctx else ""
        hint = f" (see '{command} --help')" if command else ""
        click.echo(f"sfu: error: {message}{hint}", err=True)
        return _fail(invocation, exc.exit_code, "UsageError", message)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        message = f"{where}{exc.strerror or exc}"
        click.echo(f"sfu: error: {message}", err=True)
        return _fail(invocation, EXIT_IO, "UsageError", message)
    return result if isinstance(result, int) else 0  # a command may return its exit code


if __name__ == "__main__":
    sys.exit(main())

"""Entry point: the `sfu` group, and the one place errors become exit codes.

Every deliberate error (`sfupdate.errors.SfuError`) prints one line on stderr,
`sfu: error: <what happened>`, and exits with the code documented in docs/cli.md.
"""

from __future__ import annotations

import sys

import click

from sfupdate import __version__
from sfupdate.cli import agent_cmds, author_cmds, board_cmds, delivery_cmds, operator_cmds
from sfupdate.errors import SfuError

EXIT_INTERRUPTED = 130
EXIT_IO = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sfu")
def cli() -> None:
    """sfupdate: secure firmware update with SUIT envelopes."""


author_cmds.register(cli)
agent_cmds.register(cli)
board_cmds.register(cli)
delivery_cmds.register(cli)
operator_cmds.register(cli)  # after delivery: adds `sfu client remote`


def main(argv: list[str] | None = None) -> int:
    try:
        result = cli.main(args=argv, prog_name="sfu", standalone_mode=False)
    except SfuError as exc:
        click.echo(f"sfu: error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("sfu: interrupted", err=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        click.echo("sfu: interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except OSError as exc:
        click.echo(f"sfu: error: {exc.filename or ''}: {exc.strerror or exc}", err=True)
        return EXIT_IO
    return result if isinstance(result, int) else 0  # a command may return its exit code


if __name__ == "__main__":
    sys.exit(main())

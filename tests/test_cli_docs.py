"""docs/cli.md matches the commands: the exit-code table and the error classes, help for every
option, --json on every command a script calls, the shared option names."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import click
import pytest

from sfupdate import errors
from sfupdate.cli.main import COMMANDS, LazyGroup

DOC = Path(__file__).parent.parent / "docs" / "cli.md"


def test_every_documented_exit_code_matches_its_class() -> None:
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*`(\w+)`", DOC.read_text(), re.MULTILINE)
    assert rows, "no exit-code table found"
    for code, name in rows:
        assert getattr(errors, name).exit_code == int(code), name


def test_every_exit_code_is_documented() -> None:
    documented = {int(c) for c in re.findall(r"^\|\s*(\d+)\s*\|", DOC.read_text(), re.M)}
    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, errors.SfuError):
            assert cls.exit_code in documented, cls.__name__


# --- every command, as `sfu ... --help` shows it ---------------------------------------------

#: Commands a script calls: each prints its result as JSON with --json (docs/cli.md).
SCRIPTED = [
    "sign", "verify", "inspect", "keys generate", "install",
    "repo init", "repo add", "repo remove", "repo list", "repo publish",
    "client check", "client update", "client status", "client remote", "client watch",
    "client ddi",
    "agent status", "agent confirm", "agent reject-trial", "agent check", "agent attest",
    "agent audit", "agent policy install", "agent bundle",
    "board status", "board boot", "board confirm",
    "remote sign", "remote policy-sign", "attest verify",
]


def _commands() -> dict[str, click.Command]:
    """Every leaf command by its path ("client update"), all modules registered."""
    group = LazyGroup(name="sfu", lazy=COMMANDS)
    ctx = click.Context(group, info_name="sfu")
    for name in COMMANDS:
        group.get_command(ctx, name)
    found: dict[str, click.Command] = {}

    def walk(command: click.Command, path: str) -> None:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}".strip())
        else:
            found[path] = command

    walk(group, "")
    return found


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option)]


def test_every_option_has_help() -> None:
    missing = [f"{path} {option.opts[-1]}" for path, command in _commands().items()
               for option in _options(command) if not option.hidden and not option.help]
    assert missing == []


def test_every_scripted_command_has_json() -> None:
    commands = _commands()
    assert [path for path in SCRIPTED
            if "--json" not in {o.opts[-1] for o in _options(commands[path])}] == []


@pytest.mark.parametrize(("option", "metavar"), [("--socket", "PATH"),
                                                  ("--timeout", "SECONDS")])
def test_shared_options_are_named_and_shown_alike(option: str, metavar: str) -> None:
    """`--socket PATH` and `--timeout SECONDS` wherever the agent is reached, with one help."""
    found = [(path, o) for path, command in _commands().items() for o in _options(command)
             if option in o.opts]
    assert {path for path, _ in found} >= {"client check", "client update", "client remote",
                                           "install", "agent status", "agent attest"}
    assert {o.metavar for _, o in found} == {metavar}
    assert len({o.help for path, o in found if path != "agent serve"}) == 1


def test_the_shared_vocabulary_is_documented() -> None:
    text = DOC.read_text()
    for needle in ('{"error": {"code"', '"event": "progress"', "--progress auto|lines|json|none",
                   "sfu client status", "--socket PATH", "--timeout SECONDS"):
        assert needle.replace("|", "\\|") in text or needle in text, needle
    for path in SCRIPTED:
        assert f"sfu {path.split()[0]}" in text, path


def test_every_streaming_command_has_progress() -> None:
    commands = _commands()
    for path in ("sign", "verify", "install", "client update"):
        (option,) = [o for o in _options(commands[path]) if "--progress" in o.opts]
        assert isinstance(option.type, click.Choice)
        assert list(option.type.choices) == ["auto", "lines", "json", "none"], path

"""docs/cli.md names every option of the commands that take keys."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from sfupdate.cli.main import cli

DOC = Path(__file__).parent.parent.parent / "docs" / "cli.md"
COMMANDS = [("keys", "generate"), ("keys", "public"), ("sign",), ("repo", "init"),
            ("repo", "publish"), ("repo", "rotate"), ("repo", "status"), ("remote", "sign"),
            ("remote", "policy-sign"), ("remote", "trust-sign"), ("remote", "trust-cosign"),
            ("client", "trust"), ("agent", "bundle")]


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_key_option_is_documented(path: tuple[str, ...]) -> None:
    ctx = click.Context(cli, info_name="sfu")
    command: click.Command | None = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.get_command(ctx, name)
    assert command is not None
    text = DOC.read_text()
    assert f"sfu {' '.join(path)} " in text
    for param in command.params:
        if isinstance(param, click.Option):  # under its long or short name (-o)
            assert any(option in text for option in param.opts), (
                f"sfu {' '.join(path)} {param.opts[0]} is not in docs/cli.md")

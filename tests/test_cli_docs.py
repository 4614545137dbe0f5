"""docs/cli.md's exit-code table matches the error classes, so scripts can rely on it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from sfupdate import errors

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

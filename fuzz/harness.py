"""What the atheris harnesses share (fuzz/fuzz_*.py import it; it is not a harness itself).

The first input byte picks a target and the rest is its input; `sfupdate.errors.SfuError` is
the refusal every target may answer with, and any other exception is a finding."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence

import atheris

from sfupdate import errors

Target = Callable[[bytes], object]


def selecting(targets: Sequence[Target]) -> Callable[[bytes], None]:
    """A `test_one_input` that feeds data[1:] to targets[data[0] % len(targets)]."""
    def test_one_input(data: bytes) -> None:
        if not data:
            return
        target = targets[data[0] % len(targets)]
        with contextlib.suppress(errors.SfuError):
            target(data[1:])
    return test_one_input


def fuzz(test_one_input: Callable[[bytes], None]) -> None:
    """Run the fuzzer with the command line's libFuzzer arguments (corpus dirs, limits)."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

"""An SFUI piped into `sfu install` or `sfu client update --from` (`-` or /dev/stdin): its
length is unknown, so it is streamed to the real agent as an install of unknown size, which
the agent's own checks still bound (the envelope declares the payload size)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from sfupdate import errors
from tests.conftest import SignImage
from tests.delivery.device import Device

PAYLOAD = b"piped firmware " * 13_000  # 195 kB: several pipe buffers


def sfu_piped(data: bytes, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """`... | sfu ARGS`: `data` arrives through a pipe, as from `cat x.sfui |`."""
    return subprocess.run([sys.executable, "-m", "sfupdate.cli.main", *map(str, args)],
                          input=data.decode("latin-1"), encoding="latin-1",
                          capture_output=True, timeout=60, check=False)


COMMANDS = {
    "install -": ("install", "-"),
    "install /dev/stdin": ("install", "/dev/stdin"),
    "client update --from -": ("client", "update", "--from", "-"),
    "client update --from /dev/stdin": ("client", "update", "--from", "/dev/stdin"),
}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_an_sfui_of_unknown_length_installs_from_a_pipe(
        command: tuple[str, ...], sign_image: SignImage, device: Device) -> None:
    image = sign_image(PAYLOAD, sequence=2)
    result = sfu_piped(image.read_bytes(), *command, "--socket", device.agent.socket)
    assert result.returncode == 0, result.stderr
    assert "installed sequence 2 into slot B" in result.stdout
    device.assert_trial(2, hashlib.sha256(PAYLOAD).hexdigest())


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_a_truncated_sfui_from_a_pipe_is_refused(
        command: tuple[str, ...], sign_image: SignImage, device: Device) -> None:
    data = sign_image(PAYLOAD, sequence=2).read_bytes()
    result = sfu_piped(data[:-1000], *command, "--socket", device.agent.socket)
    assert result.returncode == errors.PayloadTooShortError.exit_code, result.stderr
    errors_said = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors_said == result.stderr.splitlines()[-1:], result.stderr  # progress before
    assert errors_said[0].startswith("sfu: error: payload truncated")
    device.assert_unchanged()

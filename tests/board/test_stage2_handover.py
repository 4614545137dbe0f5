"""The stage-2 handover: a failed stage 2 names its error by its wire code, and the boot ROM
raises the class with that code (the same codes as the IPC, sfupdate.errors.error_class)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from sfupdate import errors
from sfupdate.secure.boot import stage2
from sfupdate.secure.boot.rom import run_bundle


def test_stage2_reports_its_error_by_code() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        code = stage2.main(["not-boot"])
    assert code == errors.DeviceStateError.exit_code
    assert json.loads(out.getvalue())["error"] == "device-state"


def _fake_bundle(tmp_path: Path, reply: dict[str, str], exit_code: int) -> Path:
    bundle = tmp_path / "agent.pyz"
    bundle.write_text(f"import sys\nprint({json.dumps(json.dumps(reply))})\n"
                      f"sys.exit({exit_code})\n")
    return bundle


def test_the_rom_raises_the_class_with_that_code(tmp_path: Path) -> None:
    bundle = _fake_bundle(tmp_path, {"error": "downgrade", "message": "too old"}, 7)
    with pytest.raises(errors.DowngradeError, match="too old"):
        run_bundle(tmp_path)(bundle)


def test_an_unknown_code_is_a_plain_sfu_error(tmp_path: Path) -> None:
    bundle = _fake_bundle(tmp_path, {"error": "DowngradeError", "message": "old style"}, 7)
    with pytest.raises(errors.SfuError, match="old style") as raised:
        run_bundle(tmp_path)(bundle)
    assert type(raised.value) is errors.SfuError

"""The demo's "after an attack" act, run standalone: it sets up its own board and agent,
tampers the running slot, catches it, reverts by a signed command, reboots and attests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "scripts" / "demo_after_attack.sh"


def test_after_attack_act_runs_end_to_end(tmp_path: Path) -> None:
    env = dict(os.environ, SFU=f"{sys.executable} -m sfupdate.cli.main", TMPDIR=str(tmp_path))
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env,
                          timeout=240, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "MISMATCH  running-slot" in out and "caught: exit code 16" in out
    assert "revert (command 1): trial slot B (sequence 2) marked bad" in out
    assert "command number 1 is not above 1" in out  # the replay was refused
    assert "booted slot A (confirmed), sequence 1" in out
    attested = out[out.index("After an attack 7/7"):]
    assert "running          slot A, sequence 1\n" in attested
    assert "trial            -\n" in attested
    assert "  OK        running-slot" in attested
    assert list(tmp_path.iterdir()) == []  # the act's scratch directory is gone


def test_act_script_only_defines_functions_when_sourced(tmp_path: Path) -> None:
    probe = f"source {SCRIPT}; declare -F act_after_attack after_attack_provision_args"
    proc = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30,
                          check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["act_after_attack", "after_attack_provision_args"]
    assert list(tmp_path.iterdir()) == []  # sourcing ran nothing

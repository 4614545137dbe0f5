"""`make demo` works: scripts/demo.sh runs the whole story end to end and exits 0.

The script itself fails (exit 1) when a step misbehaves or an attack is not refused, so
this test proves every act in CI; the lines checked are the ones a reader looks for.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

KEY_LINES = [
    "v2.sfui: OK: authentic and complete",
    "provisioned; slot A confirmed at sequence 1",
    "update available: v2.sfui, sequence 2",
    "installed sequence 2 into slot B",
    "booted slot B (trial), sequence 2, version 2.0.0, healthy",
    "ok  v2 confirmed; rollback floor 2",
    "downgrade: v1 (validly signed) from local media: refused (exit 7)",
    "handed to the agent: refused (exit 4): payload does not match the signed image-digest",
    "offered to the repository (add verifies it): refused (exit 4): ",
    "tampered image on the server (the signed index has its digest): refused (exit 14)",
    "ok  v3 installed into slot A as a trial, booted, failed its health check, reverted to v2",
    "MISMATCH  running-slot",
    "replaying the same command: sfu: error: command number 1 is not above 1",
    "booted slot B (confirmed), sequence 2, version 2.0.0, healthy",
    "confirm before the trial has booted and passed its health check: refused (exit 12)",
    "agent bundle 2 in partition B confirmed itself",
    "the old agent bundle (sequence 1) offered again: refused (exit 7)",
    "both components of set 2 installed, booted and confirmed as one; rollback floor 2",
    "an SFUI naming only the application: set 3 keeps bootloader 2",
    "a set with one byte of its second payload flipped: refused (exit 4): payload does not "
    "match the signed image-digest",
    "demo complete",
]


def test_demo_runs_the_whole_story_and_cleans_up(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "TMPDIR": str(tmp_path)}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for line in KEY_LINES:
        assert line in output, f"missing {line!r} in:\n{output}"
    assert "FAILED" not in output and "Traceback" not in output
    assert list(tmp_path.iterdir()) == []  # its scratch directory is gone ...
    assert _processes_in(tmp_path) == []  # ... and so are the server and the agent it started


def _processes_in(directory: Path) -> list[str]:
    """Processes whose working directory is (or was) under `directory`."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(directory)):
            found.append(f"{proc.name}: {(proc / 'cmdline').read_bytes()!r}")
    return found

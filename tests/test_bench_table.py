"""`make bench` builds issue 15's table (benchmarks/run.py); run it here at 1 MiB and one run
so that it cannot rot. Nothing here looks at a time: the figures of a 1 MiB run mean nothing,
only that every row is measured, through the one row builder, and written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The rows issue 15 asks for (a path may name its server).
PATHS = ["`sfu verify`", "`sfu sign`", "`sfu install` -> agent -> slot",
         "full update via sfu serve", "full update via nginx",
         "fixed part of an update via sfu serve", "`sfu --version`", "`sfu --help`",
         "`sfu agent status`"]


def _bench(tmp_path: Path, mib: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SFU_BENCH_MIB": mib, "SFU_BENCH_RUNS": "1", "TMPDIR": str(tmp_path)}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "-o",
                           str(tmp_path / "RESULTS.md")], env=env, capture_output=True,
                          text=True, timeout=240)


def test_the_bench_table_has_every_path_of_issue_15(tmp_path: Path) -> None:
    result = _bench(tmp_path, "1")
    assert result.returncode == 0, result.stderr
    table = result.stdout.splitlines()
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert header[:6] == ["path", "today s (min-max)", "limits s (same run)",
                          "ratio to the largest", "goal", "met"]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in table[2:]}
    for path in PATHS:
        [cells] = [cells for name, cells in rows.items() if name.startswith(path)]
        if cells[1] == "not run":
            assert path == "full update via nginx" and "not installed" in cells[-1]
            continue
        float(cells[1].split()[0])  # a figure, its limits and their ratio
        assert cells[2] and float(cells[3].split()[0]) > 0
        assert cells[5] in ("yes", "NO") and "sfu " in cells[8]
    for name, cells in rows.items():  # the servers' peak RSS is counted where they work
        if name.startswith(("`sfu install`", "full update", "`sfu agent status`")):
            assert "agent " in cells[8], name
    written = (tmp_path / "RESULTS.md").read_text()
    assert result.stdout.strip() in written and "1 MiB firmware" in written
    assert list(tmp_path.glob("sfu-bench-*")) == []  # the world is cleaned up


def test_a_bad_bench_size_is_refused(tmp_path: Path) -> None:
    result = _bench(tmp_path, "big")
    assert result.returncode != 0 and "SFU_BENCH_MIB must be a positive integer" in result.stderr
    assert not (tmp_path / "RESULTS.md").exists()

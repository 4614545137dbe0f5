"""The fuzz harnesses run (briefly, in CI), and every past finding stays fixed.

`make fuzz` runs each harness for longer. A crash or hang found there is saved under
fuzz/regressions/<harness>/ and replayed here forever.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).parent.parent / "fuzz"
HARNESSES = sorted(p.stem for p in FUZZ.glob("fuzz_*.py"))
SMOKE_SECONDS = 6


@pytest.mark.parametrize("harness", HARNESSES)
def test_harness_runs_clean(harness: str, tmp_path: Path) -> None:
    corpus = FUZZ / "corpus" / harness.removeprefix("fuzz_")
    result = subprocess.run(
        [sys.executable, str(FUZZ / f"{harness}.py"), str(tmp_path), str(corpus),
         f"-max_total_time={SMOKE_SECONDS}", "-timeout=5", "-rss_limit_mb=512"],
        capture_output=True, text=True, timeout=120)
    runs = [line for line in result.stderr.splitlines() if line.startswith("Done ")]
    print(harness, runs[-1] if runs else result.stderr[-500:])
    assert result.returncode == 0, result.stderr[-3000:]


def _regressions() -> list[tuple[str, Path]]:
    return [(d.name, f) for d in sorted((FUZZ / "regressions").glob("*")) if d.is_dir()
            for f in sorted(d.iterdir())]


@pytest.mark.parametrize(("harness", "case"), _regressions() or [pytest.param(
    "", Path(), marks=pytest.mark.skip(reason="no fuzz findings recorded yet"))])
def test_past_findings_stay_fixed(harness: str, case: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FUZZ))  # the harnesses import fuzz/harness.py
    spec = importlib.util.spec_from_file_location(harness, FUZZ / f"{harness}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.test_one_input(case.read_bytes())

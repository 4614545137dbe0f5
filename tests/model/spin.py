"""Running spin on model/kernel.pml: exhaustive verification (spin -a, gcc, ./pan), random
walks and trace replays in spin's simulator, and the "ST" lines the model prints after every
operation (the abstract state, in the model's vocabulary)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

MODEL_DIR = Path(__file__).resolve().parents[2] / "model"
MODEL = MODEL_DIR / "kernel.pml"
#: Exhaustive runs bound the event log's operator room to 2 (the code's is 30) so that the
#: "acknowledge first" refusal is reached with NC = 3 command numbers.
EXHAUSTIVE_DEFINES = ("ROOM=2",)
PAN_MEMORY_MB = 2048
PAN_DEPTH = 100_000

#: op, result, then the state: st0 st1 rec0 rec1 con0 con1 conf trial tries floor booted th
#: rvk quar last pins (model/ops.pml run_op)
State = tuple[int, ...]
Op = tuple[int, int, int, int, int]  # op, a1, a2, a3, cut


def require_spin() -> None:
    """Skip (locally) or fail (in CI, where .ci/run installs them) without spin and gcc."""
    missing = [tool for tool in ("spin", "gcc") if shutil.which(tool) is None]
    if missing:
        why = f"{' and '.join(missing)} not installed (apt-get install -y spin gcc)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI must run the model checks (.ci/run installs them)")
        pytest.skip(why)


@dataclass(frozen=True)
class PanResult:
    defines: tuple[str, ...]
    errors: int
    states: int
    transitions: int
    depth: int
    seconds: float
    violated: str
    output: str

    def figures(self) -> str:
        return (f"{' '.join('-D' + d for d in self.defines)}: {self.errors} errors, "
                f"{self.states:,} states stored, {self.transitions:,} transitions, depth "
                f"{self.depth}, {self.seconds:.1f} s")


def _number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    if found is None:
        raise AssertionError(f"no {pattern!r} in pan's output:\n{text}")
    return float(found.group(1))


def verify(defines: Sequence[str], workdir: Path, pan_args: Sequence[str] = (),
           optimise: bool = True) -> PanResult:
    """spin -a with `defines`, compile pan for a safety search, run it exhaustively (compiled
    without optimisation for a short run, such as a broken variant's: quicker overall)."""
    workdir.mkdir(parents=True, exist_ok=True)
    for source in MODEL_DIR.glob("*.pml"):
        shutil.copy(source, workdir / source.name)
    flags = [f"-D{d}" for d in (*EXHAUSTIVE_DEFINES, *defines)]
    subprocess.run(["spin", "-a", *flags, "kernel.pml"], cwd=workdir, check=True,
                   capture_output=True, text=True)
    subprocess.run(["gcc", "-O2" if optimise else "-O0", "-w", "-DSAFETY",
                    f"-DMEMLIM={PAN_MEMORY_MB}", "-o", "pan", "pan.c"],
                   cwd=workdir, check=True, capture_output=True, text=True)
    run = subprocess.run(["./pan", f"-m{PAN_DEPTH}", "-w22", *pan_args], cwd=workdir, check=False,
                         capture_output=True, text=True, timeout=600)
    out = run.stdout + run.stderr
    if "max search depth too small" in out or "out of memory" in out:
        raise AssertionError(f"pan's search was not exhaustive:\n{out}")
    violated = re.search(r"assertion violated (.*) \(at depth", out)
    return PanResult(tuple(defines), int(_number(r"errors: (\d+)", out)),
                     int(_number(r"(\d+) states, stored", out)),
                     int(_number(r"([\d.e+]+) transitions \(", out)),
                     int(_number(r"depth reached (\d+)", out)),
                     _number(r"elapsed time ([\d.e+]+) seconds", out),
                     violated.group(1) if violated else "", out)


_ST = re.compile(r"^\s*ST((?: -?\d+)+)\s*$")
_OP = re.compile(r"^\s*OP((?: -?\d+)+)\s*$")


def _simulate(source: Path, defines: Sequence[str], seed: int | None = None) -> str:
    args = ["spin", *(f"-D{d}" for d in defines)]
    if seed is not None:
        args.append(f"-n{seed}")
    run = subprocess.run([*args, source.name], cwd=source.parent, check=False,
                         capture_output=True, text=True, timeout=120)
    if run.returncode != 0 or "error" in run.stdout.lower():
        raise AssertionError(f"spin failed on {source}:\n{run.stdout}\n{run.stderr}")
    return run.stdout


#: The random walks and trace replays bound versions at 4 (exhaustive runs at 3), and check
#: every property's assertions along the way (spin's simulator stops at a violated one).
TRACE_NV = 4
ALL_PROPERTIES = ("PROP_A", "PROP_B", "PROP_C", "PROP_D", "PROP_E", "PROP_F", "PROP_INV")


def walk(seed: int, ops: int, defines: Sequence[str] = ()) -> list[tuple[Op, State]]:
    """A random walk of the model: each operation it chose with the state after it."""
    out = _simulate(MODEL, ("WALK", f"WALK_OPS={ops}", f"NV={TRACE_NV}", *ALL_PROPERTIES,
                            *defines), seed)
    steps: list[tuple[Op, State]] = []
    op: Op | None = None
    for line in out.splitlines():
        if (m := _OP.match(line)) is not None:
            values = [int(v) for v in m.group(1).split()]
            op = (values[0], values[1], values[2], values[3], values[4])
        elif (m := _ST.match(line)) is not None:
            assert op is not None, out
            steps.append((op, tuple(int(v) for v in m.group(1).split())))
            op = None
    assert len(steps) == ops, out
    return steps


def replay(ops: Sequence[Op], defines: Sequence[str] = ()) -> list[State]:
    """The model's state after each of `ops`, replayed in spin's simulator (a generated
    driver includes the model in TRACE mode)."""
    lines = ["#define TRACE", f"#define TRACE_LEN {max(1, len(ops))}", f"#define NV {TRACE_NV}",
             *(f"#define {d.replace('=', ' ', 1)}" for d in (*ALL_PROPERTIES, *defines)),
             "inline load_trace() {"]
    for i, (op, a1, a2, a3, cut) in enumerate(ops):
        lines.append(f"  t_op[{i}] = {op}; t_a1[{i}] = {a1}; t_a2[{i}] = {a2}; "
                     f"t_a3[{i}] = {a3}; t_cut[{i}] = {cut};")
    lines += ["}", f'#include "{MODEL}"', ""]
    with tempfile.TemporaryDirectory(prefix="sfu-trace-") as tmp:
        driver = Path(tmp) / "trace.pml"
        driver.write_text("\n".join(lines))
        out = _simulate(driver, ())
    states = [tuple(int(v) for v in m.group(1).split())
              for line in out.splitlines() if (m := _ST.match(line)) is not None]
    assert len(states) == len(ops), out
    return states

"""Benchmark: install a set of two components through the agent, against one image of the same
total size, on the same kind of board, in the same run.

Three installs into a sim board of components "boot" and "app" (each half the size):
the single image (one component board, the reference), the set naming both components, and an
SFUI naming only "app" (the agent copies "boot" from the confirmed side, hashing it). Reported:
the median wall time of `sfu install` for each, as a ratio to the single image, and the agent's
peak RSS (VmHWM), which must stay flat whatever the sizes.

    .venv/bin/python benchmarks/bench_install_set.py --size-mib 256
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_install import MIB, start_agent, write_firmware
from common import time_sfu, vm_hwm_kib

from sfupdate.authoring.author import ImageSpec, sign_firmware
from sfupdate.authoring.author.bundle import one_time_agent_bundle
from sfupdate.authoring.author.components import sign_components
from sfupdate.formats.sfui import TrustedKey, class_uuid, vendor_uuid
from sfupdate.keys import generate_private_key
from sfupdate.keys.files import FileSigner
from sfupdate.secure.board.sim import create_board
from sfupdate.secure.boot.provision import provision


def run(size_mib: int = 256, runs: int = 3, directory: Path | None = None) -> str:
    """Measure and return a markdown section (each timing: median of `runs`)."""
    half = size_mib // 2 * MIB
    work = Path(tempfile.mkdtemp(prefix="sfu-bench-set-", dir=directory))
    agents: list[subprocess.Popen[bytes]] = []
    try:
        signer = FileSigner(generate_private_key("ES256"))  # type: ignore[arg-type]
        vendor = vendor_uuid("example.com")
        klass = class_uuid(vendor, "demo-board")
        trusted = [TrustedKey(signer.public_key)]
        for name in ("boot", "app"):
            (work / f"{name}1.bin").write_bytes(name.encode() * 4096)
            write_firmware(work / f"{name}2.bin", half)
        with (work / "fw2.bin").open("wb") as out:  # the single image: both halves
            for name in ("boot", "app"):
                with (work / f"{name}2.bin").open("rb") as part:
                    shutil.copyfileobj(part, out)
        spec = ImageSpec(1, vendor, klass, "1", None)
        sign_firmware(work / "boot1.bin", work / "single1.sfui", signer, spec)
        sign_components([("boot", work / "boot1.bin"), ("app", work / "app1.bin")],
                        work / "set1.sfui", signer, spec)
        spec2 = ImageSpec(2, vendor, klass, "2", None)
        sign_firmware(work / "fw2.bin", work / "single.sfui", signer, spec2)
        sign_components([("boot", work / "boot2.bin"), ("app", work / "app2.bin")],
                        work / "set.sfui", signer, spec2)
        sign_components([("app", work / "app2.bin")], work / "app-only.sfui", signer, spec2)
        slot = -(-(half + MIB) // 4096) * 4096
        boards = {"single": create_board(work / "b-single", 2 * slot),
                  "set": create_board(work / "b-set", slot, [("boot", slot), ("app", slot)])}
        for kind, board in boards.items():
            provision(board, trusted, "example.com", "demo-board", work / f"{kind}1.sfui",
                      *one_time_agent_bundle())
        timings, peaks = {}, {}
        for label, kind, sfui in (("one image", "single", "single.sfui"),
                                  ("a set naming both components", "set", "set.sfui"),
                                  ("a set naming one, keeping the other", "set",
                                   "app-only.sfui")):
            sock = work / f"{kind}.sock"
            if not sock.exists():
                agents.append(start_agent(work / f"b-{kind}", sock, work / f"{kind}.log"))
            # each run installs again into the inactive side (nothing is confirmed)
            timings[label] = time_sfu(["install", work / sfui, "--socket", sock], runs).wall
            peaks[label] = vm_hwm_kib(agents[-1].pid)
    finally:
        for agent in agents:
            agent.send_signal(signal.SIGTERM)
            agent.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    reference = timings["one image"]
    rows = [f"| {label} | {t:.2f} | {t / reference:.2f} | {peaks[label] / 1024:.1f} |"
            for label, t in timings.items()]
    return "\n".join([
        f"### Install of a set of two components through the agent: {size_mib} MiB in all "
        f"(median of {runs})",
        "",
        "| `sfu install` of | s | x one image | agent peak RSS MiB |",
        "|---|---|---|---|",
        *rows,
    ]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256, help="total size in MiB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    print(run(args.size_mib, args.runs, args.dir))


if __name__ == "__main__":
    main()

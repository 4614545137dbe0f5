"""Benchmark: install an SFUI through the agent's socket into a sim slot (with fsync).

Reported as ratios to two references measured in the same run on the same file:
`openssl dgst -sha256` (the hashing limit: the agent must hash every payload byte) and
`dd conv=notrunc,fsync bs=1M` into an existing file (the writing limit). Also the peak RSS
(VmHWM) of the agent process and of the installing client process: both must stay flat
whatever the image size. The same firmware is installed a second time encrypted (A128GCM,
ECDH-ES+A128KW to the board's key): the agent then decrypts while it writes.

    .venv/bin/python benchmarks/bench_install.py --size-mib 256

The files are generated in a temporary directory (a repeated random block, so generating
1 GiB is quick) and deleted afterwards. The page cache is warmed with the SFUI first so that
every measure reads it from memory alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import time_command, time_sfu, vm_hwm_kib
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sfupdate.authoring.author import ImageSpec, sign_firmware
from sfupdate.authoring.author.bundle import one_time_agent_bundle
from sfupdate.authoring.author.encrypt import PayloadEncryption
from sfupdate.formats.sfui import TrustedKey, class_uuid, vendor_uuid
from sfupdate.keys import generate_private_key
from sfupdate.keys.files import FileSigner
from sfupdate.secure.board.sim import create_board
from sfupdate.secure.boot.provision import provision

MIB = 1024 * 1024


def write_firmware(path: Path, size: int) -> None:
    block = os.urandom(MIB)
    with path.open("wb") as f:
        for offset in range(0, size, MIB):
            f.write(block[:min(MIB, size - offset)])


def start_agent(board: Path, sock: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sfupdate.cli.main", "agent", "serve",
                                 "--board", str(board), "--socket", str(sock)],
                                stdout=out, stderr=out)
    deadline = time.monotonic() + 30
    while not _accepts(sock):  # bound AND listening, not just a socket file
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"agent did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return proc


def _accepts(sock: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(sock))
        except OSError:
            return False
    return True


def run(size_mib: int = 1024, runs: int = 3, directory: Path | None = None) -> str:
    """Measure and return a markdown section (each timing: median of `runs`)."""
    size = size_mib * MIB
    if shutil.which("openssl") is None:
        raise SystemExit("openssl is required for the reference measure")
    work = Path(tempfile.mkdtemp(prefix="sfu-bench-", dir=directory))
    agent: subprocess.Popen[bytes] | None = None
    try:
        signer = FileSigner(generate_private_key("ES256"))  # type: ignore[arg-type]
        vendor = vendor_uuid("example.com")
        klass = class_uuid(vendor, "demo-board")
        (work / "v1.bin").write_bytes(b"v1" * 4096)
        sign_firmware(work / "v1.bin", work / "v1.sfui", signer,
                      ImageSpec(1, vendor, klass, "1", None))
        slot_size = -(-(size + MIB) // 4096) * 4096
        board_dir = work / "board"
        done = provision(create_board(board_dir, slot_size), [TrustedKey(signer.public_key)],
                         "example.com", "demo-board", work / "v1.sfui", *one_time_agent_bundle())
        device_key = serialization.load_pem_public_key(done.encryption_public_pem)
        assert isinstance(device_key, ec.EllipticCurvePublicKey)
        write_firmware(work / "fw.bin", size)
        sfui, encrypted = work / "fw.sfui", work / "fw-enc.sfui"
        sign_firmware(work / "fw.bin", sfui, signer, ImageSpec(2, vendor, klass, "2", None))
        sign_firmware(work / "fw.bin", encrypted, signer, ImageSpec(3, vendor, klass, "3", None),
                      encryption=PayloadEncryption([device_key]))
        (work / "fw.bin").unlink()
        existing = work / "existing.img"
        with existing.open("wb") as f:  # the same kind of target as a sim slot
            f.truncate(slot_size)
        total = sfui.stat().st_size
        time_command(["cat", str(sfui)], runs=1)  # warm the page cache
        t_openssl = time_command(["openssl", "dgst", "-sha256", str(sfui)], runs)
        t_dd = time_command(["dd", f"if={sfui}", f"of={existing}", "conv=notrunc,fsync",
                             "bs=1M"], runs)
        existing.unlink()

        sock = work / "agent.sock"
        agent = start_agent(board_dir, sock, work / "agent.log")
        agent_idle = vm_hwm_kib(agent.pid)
        t_startup = time_sfu(["agent", "status", "--socket", sock], runs).wall
        # Each run installs the same image again into the inactive slot (it stays above
        # the floor while nothing is confirmed).
        installed = time_sfu(["install", sfui, "--socket", sock], runs)
        t_install, client_rss = installed.wall, installed.peak_rss_kib
        agent_peak = vm_hwm_kib(agent.pid)
        time_command(["cat", str(encrypted)], runs=1)
        t_encrypted = time_sfu(["install", encrypted, "--socket", sock], runs).wall
        agent_peak_encrypted = vm_hwm_kib(agent.pid)
    finally:
        if agent is not None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    rate = total / MIB
    rows = [f"| {name} | {t:.2f} | {rate / t:.0f} | {t / t_openssl:.2f} | {t / t_dd:.2f} |"
            for name, t in (("`openssl dgst -sha256`", t_openssl),
                            ("`dd conv=notrunc,fsync bs=1M`", t_dd),
                            ("`sfu install` -> agent -> slot (fsync)", t_install),
                            ("the same, encrypted: the agent decrypts (A128GCM)", t_encrypted))]
    return "\n".join([
        f"### Install through the agent: {total / MIB:.0f} MiB SFUI into a sim slot "
        f"({os.cpu_count()} CPUs, Python {sys.version.split()[0]}, median of {runs})",
        "",
        "| measure | s | MiB/s | x openssl | x dd |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Fixed cost inside the install (client start-up and one request, measured as "
        f"`sfu agent status`): {t_startup:.2f} s. Peak RSS: agent {agent_peak / 1024:.1f} MiB "
        f"(idle {agent_idle / 1024:.1f} MiB; {agent_peak_encrypted / 1024:.1f} MiB after the "
        f"encrypted install too), installing client {client_rss / 1024:.1f} MiB.",
    ]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="firmware size in MiB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to put the temporary files (default: system temp dir)")
    args = parser.parse_args()
    print(run(args.size_mib, args.runs, args.dir))


if __name__ == "__main__":
    main()

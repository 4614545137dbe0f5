"""The one world every row of the table is measured in: a signing key, a generated firmware
of the benchmark's size and its SFUI, a provisioned sim board with a running `sfu agent
serve`, a published repository, and the limits (H, W, W', an interpreter start) measured on
the same files in the same run. Built with the `sfu` command itself, in a temporary directory
that is deleted afterwards."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from common import Sample, Server, make_random_file, measure, sfu_argv

MIB = 1 << 20
VENDOR, CLASS = "example.com", "bench-board"


def sfu(*args: str | Path) -> None:
    """Run `sfu ARGS` untimed (building the world)."""
    subprocess.run(sfu_argv(args), check=True, stdout=subprocess.DEVNULL)


@dataclass
class World:
    work: Path
    size: int  # the firmware's bytes
    key: Path
    public: Path
    firmware: Path
    sfui: Path
    board: Path
    repo: Path
    socket: Path
    agent: Server
    runs: int
    references: dict[str, Sample] = field(default_factory=dict)

    def limits(self, *names: str) -> dict[str, float]:
        """The named limits' wall times (median seconds)."""
        return {name: self.references[name].wall for name in names}

    def sign_argv(self, output: Path, sequence: int = 2) -> list[str]:
        return sfu_argv(["sign", self.firmware, "--key", self.key, "--sequence", str(sequence),
                         "--vendor", VENDOR, "--class", CLASS, "-o", output])


@contextmanager
def world(size: int, runs: int) -> Iterator[World]:
    with tempfile.TemporaryDirectory(prefix="sfu-bench-") as tmp:
        work = Path(tmp)
        key, public = work / "author.key", work / "author.pub"
        sfu("keys", "generate", "--alg", "ES256", "-o", key)
        sfu("keys", "public", key, "-o", public)
        sfu("keys", "generate", "--alg", "ES256", "-o", work / "repo.key")
        (work / "v1.bin").write_bytes(b"v1" * 4096)
        firmware, sfui = work / "fw.bin", work / "fw.sfui"
        make_random_file(firmware, size)
        partial = World(work, size, key, public, firmware, sfui, work / "board", work / "repo",
                        work / "agent.sock", Server(0), runs)
        sfu("sign", work / "v1.bin", "--key", key, "--sequence", "1", "--vendor", VENDOR,
            "--class", CLASS, "-o", work / "v1.sfui")
        subprocess.run(partial.sign_argv(sfui), check=True, stdout=subprocess.DEVNULL)
        slot_size = -(-(sfui.stat().st_size + MIB) // MIB) * MIB
        sfu("board", "create", partial.board, "--slot-size", str(slot_size))
        sfu("board", "provision", partial.board, "--trust", public, "--vendor", VENDOR,
            "--class", CLASS, "--firmware", work / "v1.sfui")
        sfu("repo", "init", partial.repo, "--key", work / "repo.key", "--firmware-key", public)
        sfu("repo", "add", partial.repo, sfui)
        sfu("repo", "publish", partial.repo)
        partial.references = references(work, sfui, slot_size, runs)
        with agent(partial.board, partial.socket, work / "agent.log") as pid:
            partial.agent = Server(pid)
            yield partial


def references(work: Path, sfui: Path, slot_size: int, runs: int) -> dict[str, Sample]:
    """H, W, W' on the SFUI (read from the page cache, like every measured path) and an
    interpreter start."""
    existing, new = work / "existing.img", work / "new.img"
    with existing.open("wb") as f:  # the same kind of target as a sim slot
        f.truncate(slot_size)
    subprocess.run(["cat", str(sfui)], check=True, stdout=subprocess.DEVNULL)  # warm the cache
    try:
        return {
            "H": measure(["openssl", "dgst", "-sha256", str(sfui)], runs),
            "W": measure(["dd", f"if={sfui}", f"of={existing}", "conv=notrunc,fsync", "bs=1M"],
                         runs),
            "W'": measure(["dd", f"if={sfui}", f"of={new}", "conv=fsync", "bs=1M"], runs,
                          before=lambda: new.unlink(missing_ok=True)),
            "start": measure([sys.executable, "-c", "pass"], runs),
        }
    finally:
        existing.unlink()
        new.unlink(missing_ok=True)


@contextmanager
def agent(board: Path, sock: Path, log: Path) -> Iterator[int]:
    """A running `sfu agent serve` on `board`: its pid."""
    with log.open("wb") as out:
        proc = subprocess.Popen(sfu_argv(["agent", "serve", "--board", board, "--socket", sock]),
                                stdout=out, stderr=out)
    try:
        wait_until(lambda: subprocess.run(sfu_argv(["agent", "status", "--socket", sock]),
                                          capture_output=True).returncode == 0, proc, log)
        yield proc.pid
    finally:
        stop(proc)


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes],
               log: Path | None = None, seconds: float = 30) -> None:
    """Poll `ready()` until it is true; fail if `proc` exits or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            shown = log.read_text() if log is not None and log.exists() else ""
            raise RuntimeError(f"{proc.args!r} did not start: {shown}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def children(pid: int) -> Sequence[int]:
    """The direct children of `pid` (nginx's workers)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]

"""Where an install's time goes: the agent (in this process, each connection's thread under
cProfile) and `sfu install` (a child process under cProfile), for one install of a generated
SFUI of SFU_BENCH_MIB MiB (default 256). Prints the functions with the most time of their
own on each side. Used for docs/benchmarks.md, "What is left"; not a benchmark (cProfile
slows Python code down, not the C calls that dominate).

    SFU_BENCH_MIB=256 .venv/bin/python benchmarks/profile_install.py [--top 15]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import make_random_file

from sfupdate.authoring.author import ImageSpec, sign_firmware
from sfupdate.authoring.author.bundle import one_time_agent_bundle
from sfupdate.formats.ipc.framing import Connection
from sfupdate.formats.sfui import TrustedKey, class_uuid, vendor_uuid
from sfupdate.keys import generate_private_key
from sfupdate.keys.files import FileSigner
from sfupdate.secure.agent.device import Device
from sfupdate.secure.agent.server import AgentServer
from sfupdate.secure.board.sim import create_board, open_board
from sfupdate.secure.boot.provision import provision

MIB = 1 << 20


class ProfiledServer(AgentServer):
    """The agent, each connection's handling profiled into one set of statistics."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.profiles: list[cProfile.Profile] = []

    def _serve(self, conn: Connection) -> None:
        profile = cProfile.Profile()
        self.profiles.append(profile)
        profile.runcall(super()._serve, conn)


def _top(stats: pstats.Stats, top: int) -> str:
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    size = int(os.environ.get("SFU_BENCH_MIB", "256")) * MIB
    with tempfile.TemporaryDirectory(prefix="sfu-profile-") as tmp:
        work = Path(tmp)
        signer = FileSigner(generate_private_key("ES256"))  # type: ignore[arg-type]
        vendor = vendor_uuid("example.com")
        spec = ImageSpec(1, vendor, class_uuid(vendor, "board"), "1", None)
        (work / "v1.bin").write_bytes(b"v1" * 4096)
        sign_firmware(work / "v1.bin", work / "v1.sfui", signer, spec)
        make_random_file(work / "fw.bin", size)
        sign_firmware(work / "fw.bin", work / "fw.sfui", signer,
                      ImageSpec(2, spec.vendor_id, spec.class_id, "2", None))
        slot_size = -(-(size + MIB) // MIB) * MIB
        provision(create_board(work / "board", slot_size), [TrustedKey(signer.public_key)],
                  "example.com", "board", work / "v1.sfui", *one_time_agent_bundle())
        server = ProfiledServer(Device(open_board(work / "board")), work / "agent.sock")
        server.bind()
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            subprocess.run([sys.executable, "-m", "cProfile", "-o", str(work / "client.prof"),
                            "-m", "sfupdate.cli.main", "install", str(work / "fw.sfui"),
                            "--socket", str(work / "agent.sock")], check=True)
        finally:
            server.stop()
            thread.join()
        agent = pstats.Stats(server.profiles[0])
        for profile in server.profiles[1:]:
            agent.add(profile)
        print(f"## agent ({size // MIB} MiB install)\n{_top(agent, args.top)}")
        print(f"## client (`sfu install`)\n"
              f"{_top(pstats.Stats(str(work / 'client.prof')), args.top)}")


if __name__ == "__main__":
    main()

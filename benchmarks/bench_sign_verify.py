"""Sign and verify a generated file, as ratios to `openssl dgst -sha256` of the same file.

    python benchmarks/bench_sign_verify.py [--size-mib 1024] [--runs 3]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import bench_main, machine, make_random_file, table, time_command, time_sfu


def run(size_mib: int = 1024, runs: int = 3) -> str:
    with tempfile.TemporaryDirectory(prefix="sfu-bench-") as tmp:
        work = Path(tmp)
        firmware, out, key = work / "fw.bin", work / "fw.sfui", work / "k.pem"
        public = work / "k.pub"
        make_random_file(firmware, size_mib * 1024 * 1024)
        rows = []
        for alg in ("ES256", "EdDSA"):
            key.unlink(missing_ok=True)
            time_sfu(["keys", "generate", "--alg", alg, "-o", str(key)], runs=1)
            time_sfu(["keys", "public", str(key), "-o", str(public)], runs=1)
            openssl = time_command(["openssl", "dgst", "-sha256", str(firmware)], runs)
            sign = time_sfu(["sign", str(firmware), "--key", str(key), "--sequence", "1",
                             "--vendor", "example.com", "--class", "bench", "-o", str(out),
                             "--force"], runs)
            verify = time_sfu(["verify", str(out), "--key", str(public)], runs)
            for name, sample in ((f"sign {alg}", sign), (f"verify {alg}", verify)):
                rows.append([name, f"{sample.wall:.2f}", f"{openssl:.2f}",
                             f"{sample.wall / openssl:.2f}", f"{sample.cpu:.2f}",
                             sample.peak_rss_kib // 1024])
    return (f"### Sign and verify, {size_mib} MiB random file ({machine()})\n\n"
            + table(["operation", "s (median)", "openssl dgst -sha256 s", "ratio", "CPU s",
                     "peak RSS MiB"], rows)
            + "\n\nratio = our time / openssl's time for the same file in the same run.\n")


def main() -> None:
    bench_main(run, __doc__, 1024)


if __name__ == "__main__":
    main()

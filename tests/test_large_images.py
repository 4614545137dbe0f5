"""Images past 4 GiB sign, inspect and verify with flat memory (no 32-bit size anywhere)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sfupdate import keys

FIVE_GIB = 5 * 1024**3
RSS_LIMIT_KIB = 64 * 1024

# Peak RSS from /proc/self/status VmHWM: ru_maxrss is not usable here, because Python starts
# children with vfork and the child's ru_maxrss then includes the parent's (pytest's) peak.
_MEASURED = """
import sys
from sfupdate.cli.main import main
code = main(sys.argv[1:])
with open("/proc/self/status") as f:
    hwm = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
print("maxrss_kib", hwm, file=sys.stderr)
sys.exit(code)
"""


def sfu_measured(*args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run `sfu ARGS` in a fresh interpreter; return the result and its peak RSS in KiB."""
    result = subprocess.run([sys.executable, "-c", _MEASURED, *args],
                            capture_output=True, text=True, timeout=600)
    rss_line = [line for line in result.stderr.splitlines() if line.startswith("maxrss_kib")]
    return result, int(rss_line[-1].split()[1])


@pytest.mark.slow
def test_sparse_5gib_image_signs_inspects_and_verifies_with_flat_memory(tmp_path: Path) -> None:
    key, public = tmp_path / "k.pem", tmp_path / "k.pub"
    private = keys.generate_private_key("EdDSA")
    keys.write_private_key(private, key)
    public.write_bytes(keys.public_pem(private.public_key()))
    firmware = tmp_path / "big.bin"
    with open(firmware, "wb") as f:  # sparse: a few real bytes at both ends, holes between
        f.write(b"head")
        f.seek(FIVE_GIB - 4)
        f.write(b"tail")
    out = tmp_path / "big.sfui"
    try:
        signed, sign_rss = sfu_measured("sign", str(firmware), "--key", str(key), "--sequence",
                                        "5", "--vendor", "example.com", "--class", "big",
                                        "-o", str(out))
        assert signed.returncode == 0, signed.stderr
        firmware.unlink()

        inspected, _ = sfu_measured("inspect", "--json", str(out))
        assert inspected.returncode == 0, inspected.stderr
        desc = json.loads(inspected.stdout)
        assert desc["image_size"] == FIVE_GIB
        assert desc["payload"]["length"] == FIVE_GIB

        verified, verify_rss = sfu_measured("verify", str(out), "--key", str(public))
        assert verified.returncode == 0, verified.stderr
        print(f"5 GiB: sign peak RSS {sign_rss // 1024} MiB, verify {verify_rss // 1024} MiB")
        assert sign_rss < RSS_LIMIT_KIB
        assert verify_rss < RSS_LIMIT_KIB

        with open(out, "r+b") as f:  # one flipped byte past the 4 GiB mark is still caught
            f.seek(-3, 2)
            byte = f.read(1)
            f.seek(-3, 2)
            f.write(bytes([byte[0] ^ 1]))
        tampered, _ = sfu_measured("verify", str(out), "--key", str(public))
        assert tampered.returncode == 4
        assert "image-digest" in tampered.stderr
    finally:
        out.unlink(missing_ok=True)

"""Coverage-guided fuzzing (atheris) of the payload decoders a hostile payload reaches after
a valid signature: the SFD2 patch decoder and the zstd stage.

    python fuzz/fuzz_delta.py fuzz/work/delta fuzz/corpus/delta -max_total_time=60

The first byte selects the decoder (even: SFD2 against a fixed 16 KiB base, odd: zstd), the
next two the signed image size; the rest is the payload. The output is drained and must
never exceed the signed size. Any exception other than sfupdate.errors.SfuError is a finding.
"""

from __future__ import annotations

import contextlib

import atheris

with atheris.instrument_imports():
    from sfupdate import errors
    from sfupdate.formats.delta.patch import apply_patch
    from sfupdate.formats.sfui.decode import decoded
    from sfupdate.formats.sfui.encoding import Compressed

from harness import fuzz  # fuzz/harness.py: what every harness shares

BASE = bytes(range(256)) * 64


class Base:
    size = len(BASE)

    def read_at(self, offset: int, length: int) -> bytes:
        assert offset >= 0 and offset + length <= len(BASE), "read outside the base"
        return BASE[offset:offset + length]


def drain(data: bytes, selector: int, size: int) -> None:
    chunks = iter([data[i:i + 977] for i in range(0, len(data), 977)])
    out = (decoded(Compressed(), chunks, size, None, 4096) if selector & 1
           else apply_patch(chunks, Base(), size))
    produced = 0
    for chunk in out:
        produced += len(chunk)
        assert produced <= size, "more than the signed size"


def test_one_input(data: bytes) -> None:
    if len(data) < 3:
        return
    with contextlib.suppress(errors.SfuError):
        drain(data[3:], data[0], int.from_bytes(data[1:3], "big"))


if __name__ == "__main__":
    fuzz(test_one_input)

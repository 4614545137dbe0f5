"""Coverage-guided fuzzing (atheris) of everything that parses an SFUI.

    python fuzz/fuzz_sfui.py fuzz/corpus/sfui -max_total_time=60

The first input byte picks the target: the whole envelope reader (with the draft's example key
trusted, so signed seeds get past authentication), or one of the parsers behind the signature
(manifest, text, command sequence, an encrypted payload's SUIT_Encryption_Info), which an
attacker with a signing key could reach. Any
exception other than sfupdate.errors.SfuError is a finding.
"""

from __future__ import annotations

import io
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from sfupdate.formats.sfui import EnvelopeReader, ImageInfo, Manifest, Text
    from sfupdate.formats.sfui.encryption import EncryptionInfo
    from sfupdate.formats.sfui.model import decode_sequence
    from sfupdate.keys import load_public_key

from harness import fuzz, selecting  # fuzz/harness.py: what every harness shares

KEY = load_public_key(
    Path(__file__).parent.parent / "tests" / "data" / "suit-examples" / "example-key-public.pem")


def read_envelope(data: bytes) -> None:
    reader = EnvelopeReader(io.BytesIO(data))
    ImageInfo.from_manifest(reader.unverified_manifest())
    reader.unverified_text()
    reader.signatures()
    verified = reader.authenticate([KEY])
    if verified.payload is not None:
        for _ in reader.payload(chunk_size=64):
            pass


def parse_manifest(data: bytes) -> None:
    ImageInfo.from_manifest(Manifest.decode(data))


TARGETS = [read_envelope, parse_manifest, Text.decode,
           lambda data: decode_sequence(data, "fuzz"), EncryptionInfo.decode]


test_one_input = selecting(TARGETS)

if __name__ == "__main__":
    fuzz(test_one_input)

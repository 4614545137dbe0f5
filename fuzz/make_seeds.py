"""(Re)create the seed corpora from the draft's examples and freshly signed SFUIs.

Each seed is prefixed with the target-selector byte the harness expects.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

import cbor2

from sfupdate.author import ImageSpec, sign_firmware
from sfupdate.keys import load_signer
from sfupdate.sfui import class_uuid, vendor_uuid

ROOT = Path(__file__).parent
EXAMPLES = ROOT.parent / "tests" / "data" / "suit-examples"


def write(corpus: Path, data: bytes) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / hashlib.sha256(data).hexdigest()[:16]).write_bytes(data)


def sfui_seeds() -> None:
    corpus = ROOT / "corpus" / "sfui"
    for example in sorted(EXAMPLES.glob("example*.cbor")):
        envelope = example.read_bytes()
        write(corpus, b"\x00" + envelope)
        members = cbor2.loads(envelope).value
        write(corpus, b"\x01" + members[3])  # the manifest alone
        if 23 in members:
            write(corpus, b"\x02" + members[23])
        if 20 in members:
            write(corpus, b"\x03" + members[20])
    # One of ours, signed with the draft's example key (trusted by the harness), so the
    # fuzzer starts past authentication and into payload streaming.
    with tempfile.TemporaryDirectory() as tmp:
        firmware, out = Path(tmp) / "fw.bin", Path(tmp) / "fw.sfui"
        firmware.write_bytes(b"seed firmware " * 8)
        spec = ImageSpec(1, vendor_uuid("example.com"), class_uuid(vendor_uuid("example.com"),
                                                                   "fuzz"), "1.0", "seed")
        signer = load_signer(EXAMPLES / "example-key-private.pem")
        sign_firmware(firmware, out, signer, spec)
        write(corpus, b"\x00" + out.read_bytes())


if __name__ == "__main__":
    sfui_seeds()
    sys.exit(0)

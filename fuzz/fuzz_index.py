"""Coverage-guided fuzzing (atheris) of the repository index as the client reads it: the
files a hostile server or mirror controls.

    python fuzz/fuzz_index.py fuzz/work/index fuzz/corpus/index -max_total_time=60

A real repository (one signed image) is built once. For each input, the selector byte picks
which metadata file the input replaces (timestamp, snapshot, targets); the client then runs
its full TUF refresh from a fresh state seeded with the trusted root. Selector 3 feeds the
input to the parser of sfupdate's own index fields (behind the signature). Any exception
other than sfupdate.errors.SfuError is a finding.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from tuf.api.metadata import TargetFile

    from sfupdate import keys
    from sfupdate.authoring.author import ImageSpec, sign_firmware
    from sfupdate.authoring.repo.repository import Repository
    from sfupdate.formats.sfui import class_uuid, vendor_uuid
    from sfupdate.richos.client.index import RepositoryIndex, _candidate
    from sfupdate.richos.client.sources import FileSource

from harness import fuzz, selecting  # fuzz/harness.py: what every harness shares

# libFuzzer ends the process with exit(), past Python's cleanup: use one fixed scratch directory
# per user, emptied at start, rather than leaking a new one per run.
WORK = Path(tempfile.gettempdir()) / f"sfu-fuzz-index-{os.getuid()}"
shutil.rmtree(WORK, ignore_errors=True)
WORK.mkdir()
REPO = WORK / "repo"
STATE = WORK / "state"


def _build() -> tuple[Path, list[Path]]:
    key = WORK / "repo.key"
    keys.write_private_key(keys.generate_private_key("EdDSA"), key)
    firmware, sfui = WORK / "fw.bin", WORK / "fw-v1.sfui"
    firmware.write_bytes(b"fuzz firmware")
    vendor = vendor_uuid("example.com")
    sign_firmware(firmware, sfui, keys.load_signer(key),
                  ImageSpec(1, vendor, class_uuid(vendor, "fuzz")))
    repo = Repository.init(REPO, key, [keys.load_public_half(key)])
    repo.add(sfui)
    repo.publish()
    meta = REPO / "metadata"

    def newest(role: str) -> Path:
        return max(meta.glob(f"*.{role}.json"), key=lambda p: int(p.name.split(".")[0]))

    return newest("root"), [meta / "timestamp.json", newest("snapshot"), newest("targets")]


ROOT, FILES = _build()
PRISTINE = {path: path.read_bytes() for path in FILES}


def refresh_with(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    shutil.rmtree(STATE, ignore_errors=True)
    try:
        RepositoryIndex(FileSource(REPO), STATE, ROOT).refresh()
    finally:
        path.write_bytes(PRISTINE[path])


def parse_entry(data: bytes) -> None:
    try:
        target = TargetFile.from_dict(json.loads(data), "fuzz.sfui")
    except Exception:  # tuf's own parser; a malformed signed index never reaches _candidate
        return
    _candidate(target, True)


test_one_input = selecting([*(functools.partial(refresh_with, path) for path in FILES),
                            parse_entry])

if __name__ == "__main__":
    fuzz(test_one_input)

"""The agent bundle: sfupdate's own sources as a zipapp, signed as an SFUI (a build-time job
of the authors; the boot ROM and the agent only verify bundles).

The boot ROM verifies the bundle against the root-key hash fused in OTP and runs exactly the
verified bytes: `python -I bundle.pyz boot BOARD` executes `sfupdate.secure.boot.stage2` from inside
the zip (the zip is first on sys.path). Third-party libraries (cryptography, cbor2) come from the
interpreter's site-packages: in this simulation they play the part of the ROM's libraries.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Final

import sfupdate
from sfupdate.authoring.author.sign import ImageSpec, sign_firmware
from sfupdate.formats.sfui import Signer, TrustedKey
from sfupdate.formats.sfui.uuids import AGENT_CLASS, AGENT_VENDOR
from sfupdate.keys import FileSigner, generate_private_key

_EPOCH: Final = (1980, 1, 1, 0, 0, 0)
_MAIN: Final = b"from sfupdate.secure.boot.stage2 import main\nraise SystemExit(main())\n"


def build_zipapp(output: Path) -> int:
    """Write a reproducible zipapp of the installed sfupdate package; return its size."""
    package = Path(sfupdate.__file__).parent
    sources = sorted(p for p in package.rglob("*")
                     if p.is_file() and p.suffix in (".py", ".typed")
                     and "__pycache__" not in p.parts)
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("__main__.py", _EPOCH), _MAIN)
        for path in sources:
            name = "sfupdate/" + path.relative_to(package).as_posix()
            zf.writestr(zipfile.ZipInfo(name, _EPOCH), path.read_bytes(),
                        compress_type=zipfile.ZIP_DEFLATED)
    return output.stat().st_size


def build_agent_bundle(signer: Signer, sequence: int = 1) -> bytes:
    """The signed agent bundle (an SFUI whose payload is the zipapp)."""
    with tempfile.TemporaryDirectory(prefix="sfu-agent-") as tmp:
        app, out = Path(tmp) / "agent.pyz", Path(tmp) / "agent.sfui"
        build_zipapp(app)
        spec = ImageSpec(sequence, AGENT_VENDOR, AGENT_CLASS, sfupdate.__version__,
                         "sfupdate agent bundle")
        sign_firmware(app, out, signer, spec)
        return out.read_bytes()


def one_time_agent_bundle() -> tuple[bytes, TrustedKey]:
    """A bundle signed with a one-time key that is then forgotten (provisioning without an
    agent key: that board's agent can never be replaced, nor forged). Returns the bundle and
    the key whose hash provisioning fuses."""
    signer = FileSigner(generate_private_key("ES256"))
    return build_agent_bundle(signer), TrustedKey(signer.public_key)

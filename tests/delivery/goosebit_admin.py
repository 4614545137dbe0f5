"""Register an SFUI as gooseBit software, through gooseBit's own storage and models.

Run by tests/delivery/goosebit_server.py with the server's environment (GOOSEBIT_DB_URI,
GOOSEBIT_ARTIFACTS_DIR): `python goosebit_admin.py FILE VERSION HW_MODEL [HW_REVISION]`;
prints the new software's id.

Why not gooseBit's upload API: `goosebit.updates.create_software_update` reads the version and
the compatible hardware from the image's header, and only knows SWUpdate (.swu) and RAUC
(.raucb) headers; an SFUI has neither, so an upload is refused (422). Everything else that
function does is done here with the same calls: the file is stored by gooseBit's storage
backend (`storage.store_file`, under `<sha1>/<name>` as uploads are), a `Software` row gets its
URI, size, SHA-1 and version, and its compatibility is the `Hardware` (model, revision) the
device reports. The version and the hardware, which the header would have given, come from the
command line: the SFUI's sequence number (what the sfupdate DDI client reports as
`sw_version`) and the device class it reports as `hw_boardname`. `image_format` keeps its
default (SWU): gooseBit stores no other value, and uses it nowhere in the DDI API. The server
then serves the file itself, through its DDI download endpoint (a Starlette FileResponse,
which honours Range).
"""

from __future__ import annotations

import asyncio
import hashlib
import sys

from anyio import Path
from goosebit.db.config import TORTOISE_CONF
from goosebit.db.models import Hardware, Software
from goosebit.storage import storage
from tortoise import Tortoise


async def add(file: str, version: str, model: str, revision: str) -> int:
    await Tortoise.init(config=TORTOISE_CONF)
    try:
        data = await Path(file).read_bytes()
        sha1 = hashlib.sha1(data).hexdigest()
        uri = await storage.store_file(Path(file), Path(sha1) / Path(file).name)
        software = await Software.create(uri=uri, version=version, size=len(data), hash=sha1)
        hardware = (await Hardware.get_or_create(model=model, revision=revision))[0]
        await software.compatibility.add(hardware)
        return int(software.id)
    finally:
        await Tortoise.close_connections()


if __name__ == "__main__":
    file, version, model, *rest = sys.argv[1:]
    print(asyncio.run(add(file, version, model, rest[0] if rest else "default")))

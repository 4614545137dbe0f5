"""python-tuf, as the client imports it: without the signing back-ends it never uses.

`tuf.api.metadata` imports `securesystemslib.signer`, which imports every cloud KMS and HSM
SDK it finds installed (boto3 alone adds 0.2 s and 20 MiB to the start of `sfu client
check`) to register signers for them. The client only verifies metadata, with the keys in
it, and sfupdate signs with its own signers (sfupdate.keys, authoring/repo/tuf_signer.py);
so while tuf is imported here, those SDKs are hidden (`sys.modules[name] = None`, which makes
their import raise ImportError: securesystemslib then marks that signer unavailable), and
visible again afterwards to any other import. If securesystemslib was imported before
(by the repository tools in the same process), nothing changes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

#: Optional SDKs of securesystemslib's AWS, GCP, Azure, Vault, TKey and HSM signers.
UNUSED_SIGNER_SDKS: Final = ("boto3", "botocore", "google.cloud", "azure", "hvac", "keylet",
                             "pkcs11")


@contextmanager
def _hidden(names: tuple[str, ...]) -> Iterator[None]:
    hide = [name for name in names if name not in sys.modules]
    for name in hide:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        yield
    finally:
        for name in hide:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


with _hidden(UNUSED_SIGNER_SDKS):
    from tuf.api import exceptions
    from tuf.api.metadata import Metadata, Root, TargetFile, Targets
    from tuf.ngclient import Updater
    from tuf.ngclient.fetcher import FetcherInterface

__all__ = ["FetcherInterface", "Metadata", "Root", "TargetFile", "Targets", "Updater",
           "exceptions"]

"""The securesystemslib adapter: our signers sign TUF metadata that python-tuf verifies, and
securesystemslib's own factory (`from_priv_key_uri`) builds one from a key reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import SSlibKey
from tuf.api.metadata import Metadata, Timestamp

from sfupdate import keys
from sfupdate.authoring.repo.tuf_signer import TufSigner


@pytest.mark.parametrize("algorithm", ["ESP256", "Ed25519"])
def test_metadata_signed_through_the_adapter_verifies(tmp_path: Path, algorithm: str) -> None:
    path = tmp_path / "timestamp.key"
    keys.write_private_key(keys.generate_private_key(algorithm), path)
    public = SSlibKey.from_crypto(keys.load_public_half(path).public_key)
    signer = TufSigner.from_priv_key_uri(str(path), public)
    assert signer.public_key.keyid == public.keyid
    md = Metadata(Timestamp(expires=datetime.now(UTC) + timedelta(days=1)))
    md.sign(signer)
    public.verify_signature(md.signatures[public.keyid], md.signed_bytes)
    other = tmp_path / "other.key"
    keys.write_private_key(keys.generate_private_key(algorithm), other)
    with pytest.raises(ValueError, match="not the private half"):
        TufSigner.from_priv_key_uri(str(other), public)

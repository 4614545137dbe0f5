"""RFC 7512 URIs: what sfupdate takes from them, and what it refuses."""

from __future__ import annotations

import pytest

from sfupdate.errors import HsmError
from sfupdate.keys.uri import Pkcs11Uri


def test_path_and_query_attributes_are_percent_decoded() -> None:
    uri = Pkcs11Uri.parse("pkcs11:token=Line%201;object=fw%20key;id=%01%ff;type=private"
                          "?module-path=/usr/lib/softhsm/libsofthsm2.so"
                          "&pin-source=file:/etc/sfu/pin")
    assert (uri.token, uri.object, uri.id) == ("Line 1", "fw key", b"\x01\xff")
    assert uri.module_path == "/usr/lib/softhsm/libsofthsm2.so"
    assert uri.pin_source == "file:/etc/sfu/pin"
    assert Pkcs11Uri.parse("pkcs11:serial=42;id=%07").token_name == "serial 42"


@pytest.mark.parametrize(("text", "says"), [
    ("pkcs11:token=t;object=k?pin-value=1234", "pin-value"),
    ("pkcs11:token=t", "object=LABEL or id="),
    ("pkcs11:token=t;object=k;slot-id=3", "unsupported attribute 'slot-id'"),
    ("pkcs11:token=t;object=k;object=j", "given twice"),
    ("pkcs11:object=k;type=cert", "not a key pair half"),
    ("pkcs11:object=%ff", "not UTF-8"),
    ("file:/k.pem", "not a pkcs11: URI"),
])
def test_refused(text: str, says: str) -> None:
    with pytest.raises(HsmError, match=says):
        Pkcs11Uri.parse(text)

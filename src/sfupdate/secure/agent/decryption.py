"""The install pipeline's decrypting stage: an SFUI whose manifest carries encryption info is
decrypted as it streams into the slot, with the content key unwrapped by this device's
key-agreement key (secure/kernel/agreement.py) or by the pre-shared key-encryption key
provisioned into its secure storage.

The key is unwrapped before the install slot is touched, so a payload encrypted for other
devices (`NotARecipientError`) or a wrapped key that does not unwrap (`KeyUnwrapError`) changes
nothing. What is written to the slot is the plaintext; the reader checks the GCM tag
(`CiphertextTagError`) and then the plaintext digest the manifest signs, and only after both
does the kernel record the trial.
"""

from __future__ import annotations

from sfupdate.formats.sfui import Verified, key_id
from sfupdate.formats.sfui.encryption import (
    ContentCipher,
    kek_id,
    unwrap_with_kek,
    unwrap_with_private_key,
)
from sfupdate.secure.agent.device import Device
from sfupdate.secure.kernel.agreement import agreement_key


def payload_cipher(device: Device, verified: Verified) -> ContentCipher | None:
    """The decryptor of `verified`'s payload for this device, or None for a payload in
    clear: the content key unwrapped with the device's key-agreement key (ECDH-ES+A128KW), or
    with its provisioned key-encryption key (A128KW) when only that one is named. Raises
    NotARecipientError or KeyUnwrapError."""
    info = verified.encryption
    if info is None:
        return None
    key = agreement_key(device.kernel.identity_key())
    kid = key_id(key.public_key())
    kek = device.kernel.payload_kek()
    if kek is not None and kid not in info.kids() and kek_id(kek) in info.kids():
        return ContentCipher(info, unwrap_with_kek(info, kek, kek_id(kek)))
    return ContentCipher(info, unwrap_with_private_key(info, key, kid))

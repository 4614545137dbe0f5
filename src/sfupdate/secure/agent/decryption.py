"""The install pipeline's decrypting stage: an SFUI whose manifest carries encryption info is
decrypted as it streams into the slot, with the content key unwrapped by this device's
key-agreement key (secure/kernel/agreement.py).

The key is unwrapped before the install slot is touched, so a payload encrypted for other
devices (`NotARecipientError`) or a wrapped key that does not unwrap (`KeyUnwrapError`) changes
nothing. What is written to the slot is the plaintext; the reader checks the GCM tag
(`CiphertextTagError`) and then the plaintext digest the manifest signs, and only after both
does the kernel record the trial.
"""

from __future__ import annotations

from sfupdate.formats.sfui import Verified, key_id
from sfupdate.formats.sfui.encryption import ContentCipher, unwrap_with_private_key
from sfupdate.secure.agent.device import Device
from sfupdate.secure.kernel.agreement import agreement_key


def payload_cipher(device: Device, verified: Verified) -> ContentCipher | None:
    """The decryptor of `verified`'s payload for this device, or None for a payload in
    clear. Raises NotARecipientError or KeyUnwrapError."""
    if verified.encryption is None:
        return None
    key = agreement_key(device.kernel.identity_key())
    cek = unwrap_with_private_key(verified.encryption, key, key_id(key.public_key()))
    return ContentCipher(verified.encryption, cek)

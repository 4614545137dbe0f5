"""Every error sfupdate raises on purpose, in one hierarchy.

Each class carries the process exit code the CLI uses for it, so a script can tell a malformed
file (3) from an unauthentic one (4) from a policy refusal (5) without parsing messages.
The table of exit codes lives in docs/cli.md and is checked by tests against these classes.

Each class also has its own stable `code`, the name it crosses a process boundary by (an agent
refusal on the IPC, a stage-2 boot failure handed back to the boot ROM): a class may be
renamed or moved, its code stays. `error_class` maps a code back (docs/agent.md lists them).
"""

from __future__ import annotations


class SfuError(Exception):
    """Root of every deliberate sfupdate error."""

    code = "error"
    exit_code = 1


# --- usage and local files -------------------------------------------------------------------


class UsageError(SfuError):
    """A command was called with arguments that cannot work (bad UUID, missing file...)."""

    code = "usage"
    exit_code = 2


class KeyFileError(SfuError):
    """A key file is missing, unreadable, not PEM, or of an unsupported key type."""

    code = "key-file"
    exit_code = 6


class KeyPassphraseError(KeyFileError):
    """An encrypted private key whose passphrase is missing, unreadable or wrong."""

    code = "key-passphrase"


class NotAPublicKeyError(KeyFileError):
    """A private key given where a public trust anchor is expected (a trust anchor is the
    public half only: `sfu keys public KEY`)."""

    code = "not-a-public-key"


class HsmError(KeyFileError):
    """A key in a PKCS#11 token (HSM) cannot be used: bad `pkcs11:` URI, module not loadable,
    token or key not found, wrong PIN, key type or mechanism not supported."""

    code = "hsm"


class RoleKeyError(KeyFileError):
    """A repository signing key that the trusted root does not list for its role, or fewer
    keys than the role's threshold."""

    code = "role-key"


# --- malformed input: the SFUI is not a well-formed envelope --------------------------------


class FormatError(SfuError):
    """The input is not a well-formed SFUI (SUIT envelope)."""

    code = "format"
    exit_code = 3


class TruncatedError(FormatError):
    """The input ended before a complete item was read."""

    code = "truncated"


class EncodingError(FormatError):
    """CBOR that is not deterministic or not well formed: indefinite or non-minimal lengths,
    unsorted or duplicate map keys, trailing bytes, reserved values."""

    code = "encoding"


class LimitExceededError(FormatError):
    """A length, count or nesting depth is beyond what sfupdate accepts."""

    code = "limit-exceeded"


class UnknownTagError(FormatError):
    """A CBOR tag other than the one expected at that place."""

    code = "unknown-tag"


class SchemaError(FormatError):
    """Well-formed CBOR whose shape is not what the SUIT/COSE schema requires."""

    code = "schema"


class MissingMemberError(SchemaError):
    """A required member (authentication wrapper, manifest, common...) is absent."""

    code = "missing-member"


class UnknownCommandError(SchemaError):
    """A SUIT command sequence holds a command this implementation does not know."""

    code = "unknown-command"


class UnsupportedError(SchemaError):
    """A valid SUIT construct that sfupdate does not implement (several components,
    dependencies, encryption, another digest algorithm...)."""

    code = "unsupported"


class PayloadTooLongError(FormatError):
    """More payload bytes arrived than the manifest's image-size declares (endless data)."""

    code = "payload-too-long"


class PayloadTooShortError(FormatError):
    """The payload ended before the manifest's image-size was reached (truncated image)."""

    code = "payload-too-short"


class PatchError(FormatError):
    """A compressed or delta payload that does not decode: a corrupt zstd frame, or a patch
    that reads outside its base image, writes past its declared size or makes no progress."""

    code = "patch"


# --- authenticity ----------------------------------------------------------------------------


class AuthenticationError(SfuError):
    """The SFUI is not proven authentic."""

    code = "authentication"
    exit_code = 4


class UnknownKeyError(AuthenticationError):
    """No trusted key matches the signature's key ID."""

    code = "unknown-key"


class UnsupportedAlgorithmError(AuthenticationError):
    """The COSE algorithm is not one sfupdate accepts, or does not match the key type."""

    code = "unsupported-algorithm"


class SignatureError(AuthenticationError):
    """The COSE_Sign1 signature does not verify with the trusted key."""

    code = "signature"


class ThresholdError(AuthenticationError):
    """Fewer distinct active trust anchors of the role signed than the device's threshold
    for that role requires (a firmware image, a trust update)."""

    code = "threshold"


class ManifestDigestError(AuthenticationError):
    """The manifest's bytes do not match the digest that the signature covers."""

    code = "manifest-digest"


class SeverableMemberDigestError(AuthenticationError):
    """A severable member (e.g. text) does not match the digest in the signed manifest."""

    code = "severable-member-digest"


class PayloadDigestError(AuthenticationError):
    """The payload's SHA-256 does not match the signed image-digest."""

    code = "payload-digest"


class KeyUnwrapError(AuthenticationError):
    """An encrypted payload's wrapped content key does not unwrap with the recipient's key
    (AES key wrap's integrity check fails): tampered with, or wrapped for another key."""

    code = "key-unwrap"


class CiphertextTagError(AuthenticationError):
    """An encrypted payload whose AEAD authentication tag does not verify: the ciphertext
    was tampered with."""

    code = "ciphertext-tag"


# --- device policy ---------------------------------------------------------------------------


class PolicyError(SfuError):
    """An authentic SFUI that this device must still refuse."""

    code = "policy"
    exit_code = 5


class WrongVendorError(PolicyError):
    """The manifest's vendor-id is not the expected one."""

    code = "wrong-vendor"

    @classmethod
    def mismatch(cls, subject: str, found: object, expected: object) -> WrongVendorError:
        """The one wording of a vendor mismatch, whichever command finds it."""
        return cls(f"{subject} is for vendor {found or 'unspecified'}, expected {expected}")


class WrongClassError(PolicyError):
    """The manifest's class-id is not the expected one."""

    code = "wrong-class"

    @classmethod
    def mismatch(cls, subject: str, found: object, expected: object) -> WrongClassError:
        """The one wording of a device-class mismatch, whichever command finds it."""
        return cls(f"{subject} is for device class {found or 'unspecified'}, "
                   f"expected {expected}")


class UnknownComponentError(PolicyError):
    """The SFUI names a component this board does not have."""

    code = "unknown-component"


class DowngradeError(PolicyError):
    """The sequence number is not above the running image's and the rollback floor."""

    code = "downgrade"
    exit_code = 7


class ReplayError(DowngradeError):
    """A signed remote command or integrity policy whose number is not above the last one the
    device accepted (a replay, or an older one)."""

    code = "replay"


class WrongDeviceError(PolicyError):
    """A signed remote command or policy that names another device (UEID) or device class."""

    code = "wrong-device"


class NotARecipientError(PolicyError):
    """An authentic SFUI whose payload is encrypted for other keys than this device's."""

    code = "not-a-recipient"


class ExpiredError(PolicyError):
    """A signed remote command past its expiry time (by the agent's clock)."""

    code = "expired"


class QuarantinedError(PolicyError):
    """The device is quarantined by its operator: only images signed by the named recovery
    key are accepted (and confirmed) until a signed `release`."""

    code = "quarantined"
    exit_code = 15


class TooLargeError(PolicyError):
    """The declared image size does not fit the slot."""

    code = "too-large"
    exit_code = 8


class DeltaBaseError(PolicyError):
    """A delta update whose base image is not the one the device runs (the digest secure
    storage recorded for its running, confirmed slot): the message names the base it needs."""

    code = "delta-base"


# --- the device and its agent ----------------------------------------------------------------


class AgentBusyError(SfuError):
    """Another install session is in progress; only one at a time."""

    code = "agent-busy"
    exit_code = 9


class StorageIntegrityError(SfuError):
    """Secure storage failed its MAC or replay check (an old copy was put back, or it was
    tampered with). The agent refuses to act on it."""

    code = "storage-integrity"
    exit_code = 10


class IpcError(SfuError):
    """The agent could not be reached, or a message broke the IPC protocol."""

    code = "ipc"
    exit_code = 11


class DeviceStateError(SfuError):
    """The request does not fit the device's state (nothing on trial to confirm, board not
    provisioned, provisioned twice...)."""

    code = "device-state"
    exit_code = 12


class IntegrityError(SfuError):
    """A runtime integrity check found a region (running slot, agent bundle, a policy region)
    whose bytes no longer match the signed digest."""

    code = "integrity"
    exit_code = 16


# --- delivery: repository and network --------------------------------------------------------


class RepositoryError(SfuError):
    """The repository's signed index cannot be trusted: bad signature, expired (freeze),
    older than one already seen (rollback), or inconsistent (mix-and-match)."""

    code = "repository"
    exit_code = 13


class DownloadError(SfuError):
    """The transfer failed: retries exhausted, too slow, or more bytes than declared."""

    code = "download"
    exit_code = 14


class ServerError(SfuError):
    """The update server (hawkBit DDI API) cannot be reached, refuses this device (its token,
    its controller id), or answers something that is not the DDI API."""

    code = "server"
    exit_code = 17


class RemoteFileNotFoundError(DownloadError):
    """The source has no such file (HTTP 404/410, missing file on local media)."""

    code = "remote-file-not-found"


class TransferInterruptedError(DownloadError):
    """One attempt failed in a way worth retrying (connection dropped or refused, no data
    within the read timeout, server error 5xx); the downloader resumes or gives up."""

    code = "transfer-interrupted"


# --- publishing: the repository's own refusals ----------------------------------------------


class DuplicateImageError(UsageError):
    """`sfu repo add`: the repository already lists another image under that name, or for the
    same vendor, class and sequence number; `--replace` replaces it."""

    code = "duplicate-image"


class NotInRepositoryError(UsageError):
    """`sfu repo remove`: no image of that name is published or staged."""

    code = "not-in-repository"


def _classes(root: type[SfuError]) -> list[type[SfuError]]:
    return [root] + [c for sub in root.__subclasses__() for c in _classes(sub)]


#: Every class of this module by its wire code (subclasses defined elsewhere, such as the IPC
#: framing's PeerClosedError, cross the wire by their parent's code).
_BY_CODE: dict[str, type[SfuError]] = {cls.code: cls for cls in _classes(SfuError)}


def error_class(code: str) -> type[SfuError] | None:
    """The class whose wire code is `code`, or None for a code this version does not know."""
    return _BY_CODE.get(code)

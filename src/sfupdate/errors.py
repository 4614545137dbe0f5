"""Every error sfupdate raises on purpose, in one hierarchy.

Each class carries the process exit code the CLI uses for it, so a script can tell a malformed
file (3) from an unauthentic one (4) from a policy refusal (5) without parsing messages.
The table of exit codes lives in docs/cli.md and is checked by tests against these classes.
"""

from __future__ import annotations


class SfuError(Exception):
    """Root of every deliberate sfupdate error."""

    exit_code = 1


# --- usage and local files -------------------------------------------------------------------


class UsageError(SfuError):
    """A command was called with arguments that cannot work (bad UUID, missing file...)."""

    exit_code = 2


class KeyFileError(SfuError):
    """A key file is missing, unreadable, not PEM, or of an unsupported key type."""

    exit_code = 6


# --- malformed input: the SFUI is not a well-formed envelope --------------------------------


class FormatError(SfuError):
    """The input is not a well-formed SFUI (SUIT envelope)."""

    exit_code = 3


class TruncatedError(FormatError):
    """The input ended before a complete item was read."""


class EncodingError(FormatError):
    """CBOR that is not deterministic or not well formed: indefinite or non-minimal lengths,
    unsorted or duplicate map keys, trailing bytes, reserved values."""


class LimitExceededError(FormatError):
    """A length, count or nesting depth is beyond what sfupdate accepts."""


class UnknownTagError(FormatError):
    """A CBOR tag other than the one expected at that place."""


class SchemaError(FormatError):
    """Well-formed CBOR whose shape is not what the SUIT/COSE schema requires."""


class MissingMemberError(SchemaError):
    """A required member (authentication wrapper, manifest, common...) is absent."""


class UnknownCommandError(SchemaError):
    """A SUIT command sequence holds a command this implementation does not know."""


class UnsupportedError(SchemaError):
    """A valid SUIT construct that sfupdate does not implement (several components,
    dependencies, encryption, another digest algorithm...)."""


class PayloadTooLongError(FormatError):
    """More payload bytes arrived than the manifest's image-size declares (endless data)."""


class PayloadTooShortError(FormatError):
    """The payload ended before the manifest's image-size was reached (truncated image)."""


# --- authenticity ----------------------------------------------------------------------------


class AuthenticationError(SfuError):
    """The SFUI is not proven authentic."""

    exit_code = 4


class UnknownKeyError(AuthenticationError):
    """No trusted key matches the signature's key ID."""


class UnsupportedAlgorithmError(AuthenticationError):
    """The COSE algorithm is not one sfupdate accepts, or does not match the key type."""


class SignatureError(AuthenticationError):
    """The COSE_Sign1 signature does not verify with the trusted key."""


class ManifestDigestError(AuthenticationError):
    """The manifest's bytes do not match the digest that the signature covers."""


class SeverableMemberDigestError(AuthenticationError):
    """A severable member (e.g. text) does not match the digest in the signed manifest."""


class PayloadDigestError(AuthenticationError):
    """The payload's SHA-256 does not match the signed image-digest."""


# --- device policy ---------------------------------------------------------------------------


class PolicyError(SfuError):
    """An authentic SFUI that this device must still refuse."""

    exit_code = 5


class WrongVendorError(PolicyError):
    """The manifest's vendor-id is not the expected one."""

    @classmethod
    def mismatch(cls, subject: str, found: object, expected: object) -> WrongVendorError:
        """The one wording of a vendor mismatch, whichever command finds it."""
        return cls(f"{subject} is for vendor {found or 'unspecified'}, expected {expected}")


class WrongClassError(PolicyError):
    """The manifest's class-id is not the expected one."""

    @classmethod
    def mismatch(cls, subject: str, found: object, expected: object) -> WrongClassError:
        """The one wording of a device-class mismatch, whichever command finds it."""
        return cls(f"{subject} is for device class {found or 'unspecified'}, "
                   f"expected {expected}")


class DowngradeError(PolicyError):
    """The sequence number is not above the running image's and the rollback floor."""

    exit_code = 7


class ReplayError(DowngradeError):
    """A signed remote command or integrity policy whose number is not above the last one the
    device accepted (a replay, or an older one)."""


class WrongDeviceError(PolicyError):
    """A signed remote command or policy that names another device (UEID) or device class."""


class ExpiredError(PolicyError):
    """A signed remote command past its expiry time (by the agent's clock)."""


class QuarantinedError(PolicyError):
    """The device is quarantined by its operator: only images signed by the named recovery
    key are accepted (and confirmed) until a signed `release`."""

    exit_code = 15


class TooLargeError(PolicyError):
    """The declared image size does not fit the slot."""

    exit_code = 8


# --- the device and its agent ----------------------------------------------------------------


class AgentBusyError(SfuError):
    """Another install session is in progress; only one at a time."""

    exit_code = 9


class StorageIntegrityError(SfuError):
    """Secure storage failed its MAC or replay check (an old copy was put back, or it was
    tampered with). The agent refuses to act on it."""

    exit_code = 10


class IpcError(SfuError):
    """The agent could not be reached, or a message broke the IPC protocol."""

    exit_code = 11


class DeviceStateError(SfuError):
    """The request does not fit the device's state (nothing on trial to confirm, board not
    provisioned, provisioned twice...)."""

    exit_code = 12


class IntegrityError(SfuError):
    """A runtime integrity check found a region (running slot, agent bundle, a policy region)
    whose bytes no longer match the signed digest."""

    exit_code = 16


# --- delivery: repository and network --------------------------------------------------------


class RepositoryError(SfuError):
    """The repository's signed index cannot be trusted: bad signature, expired (freeze),
    older than one already seen (rollback), or inconsistent (mix-and-match)."""

    exit_code = 13


class DownloadError(SfuError):
    """The transfer failed: retries exhausted, too slow, or more bytes than declared."""

    exit_code = 14


class ServerError(SfuError):
    """The update server (hawkBit DDI API) cannot be reached, refuses this device (its token,
    its controller id), or answers something that is not the DDI API."""

    exit_code = 17


class RemoteFileNotFoundError(DownloadError):
    """The source has no such file (HTTP 404/410, missing file on local media)."""


class TransferInterruptedError(DownloadError):
    """One attempt failed in a way worth retrying (connection dropped or refused, no data
    within the read timeout, server error 5xx); the downloader resumes or gives up."""


# --- publishing: the repository's own refusals ----------------------------------------------


class DuplicateImageError(UsageError):
    """`sfu repo add`: the repository already lists another image under that name, or for the
    same vendor, class and sequence number; `--replace` replaces it."""


class NotInRepositoryError(UsageError):
    """`sfu repo remove`: no image of that name is published or staged."""

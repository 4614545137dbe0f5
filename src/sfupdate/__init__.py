"""sfupdate: secure firmware update built on IETF SUIT envelopes."""

__version__ = "0.1.0"

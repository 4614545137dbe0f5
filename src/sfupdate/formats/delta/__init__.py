"""SFD2, sfupdate's delta patch format: a sequence of bounded blocks that rebuild a new image
from a base image in flat memory (docs/design.md, "Delta updates")."""

from sfupdate.formats.delta.patch import BaseImage, apply_patch

__all__ = ["BaseImage", "apply_patch"]

"""The author's packaging pipeline: firmware file in, signed SFUI out."""

from sfupdate.authoring.author.sign import ImageSpec, SignedImage, build_manifest, sign_firmware

__all__ = ["ImageSpec", "SignedImage", "build_manifest", "sign_firmware"]

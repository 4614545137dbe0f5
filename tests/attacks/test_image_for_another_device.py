"""Attack: an image for another device. The author signs firmware for many products with the
same key; the attacker takes a genuine, newer image made for another vendor or another device
class (or one that names no device at all, so it would fit any) and offers it to this device.
The signature verifies; the agent still refuses, before writing a byte.
"""

from __future__ import annotations

import pytest

from sfupdate.errors import WrongClassError, WrongVendorError
from sfupdate.formats.sfui import class_uuid, vendor_uuid
from tests.device_world import DeviceWorld
from tests.world import CLASS, VENDOR

OTHER_VENDOR = vendor_uuid("attacker.example")


def test_image_for_another_device_class_is_refused(world: DeviceWorld) -> None:
    other_board = world.image(9, klass=class_uuid(VENDOR, "other-board"))
    with world.unchanged(), pytest.raises(WrongClassError):
        world.install(other_board)


def test_image_for_another_vendor_is_refused(world: DeviceWorld) -> None:
    # The same class name under another vendor is another class ID too: both differ.
    other = world.image(9, vendor=OTHER_VENDOR, klass=class_uuid(OTHER_VENDOR, "demo-board"))
    with world.unchanged(), pytest.raises(WrongVendorError):
        world.install(other)


def test_image_with_this_class_id_under_another_vendor_is_refused(world: DeviceWorld) -> None:
    with world.unchanged(), pytest.raises(WrongVendorError):
        world.install(world.image(9, vendor=OTHER_VENDOR))


@pytest.mark.parametrize(("vendor", "klass", "error"), [
    (None, True, WrongVendorError), (True, None, WrongClassError), (None, None, WrongVendorError),
], ids=["no-vendor", "no-class", "neither"])
def test_image_that_names_no_device_is_refused(world: DeviceWorld, vendor: object,
                                               klass: object,
                                               error: type[Exception]) -> None:
    """A manifest without a vendor or class check would install on anything: refused."""
    image = world.image(9, vendor=VENDOR if vendor else None, klass=CLASS if klass else None)
    with world.unchanged(), pytest.raises(error, match="unspecified"):
        world.install(image)

"""The components an SFUI installs, one per SUIT component identifier of `suit-components`.

sfupdate names a component by a one-element identifier: `[h'<name>']`, the name in UTF-8
(`[b"firmware"]` is the one component of a simple SFUI). Each component's parameters are what
the manifest's top-level sequences set for its index (`suit-directive-set-component-index`
selecting it, then `override-parameters` / `set-parameters`), as
`sfupdate.formats.sfui.model.ImageInfo` reads them for component 0: its image digest and size,
the URI of its integrated payload (`"#<name>"`), and the vendor and class it is for.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Final

from sfupdate.errors import LimitExceededError, SchemaError
from sfupdate.formats.sfui import suit
from sfupdate.formats.sfui.model import ComponentId, Digest, Manifest, _component_parameters

#: At most this many components in one SFUI (and on one board).
MAX_COMPONENTS: Final = 8
#: A component's name: what a board calls the component and the SFUI's identifier holds.
COMPONENT_NAME: Final = re.compile(r"[a-z][a-z0-9-]{0,31}")


def check_name(name: str, what: str = "component") -> str:
    """`name` if it is a valid component name, else SchemaError."""
    if not COMPONENT_NAME.fullmatch(name):
        raise SchemaError(f"{what} name {name!r} is not 1-32 of a-z, 0-9 and '-' starting with "
                          "a letter")
    return name


def component_id(name: str) -> ComponentId:
    """The SUIT component identifier of a named component."""
    return (check_name(name).encode("ascii"),)


def component_name(identifier: ComponentId) -> str:
    """The name in a component identifier (SchemaError unless it is one valid name)."""
    if len(identifier) != 1:
        raise SchemaError(f"component identifier {[p.hex() for p in identifier]} is not one "
                          "name")
    try:
        name = identifier[0].decode("ascii")
    except UnicodeDecodeError:
        raise SchemaError("a component identifier is not an ASCII name") from None
    return check_name(name)


@dataclass(frozen=True)
class Part:
    """One component of an SFUI as its signed manifest describes it."""

    name: str
    index: int
    digest: Digest | None
    size: int | None
    uri: str | None
    vendor_id: uuid.UUID | None  # None also for a vendor given as a PEN
    class_id: uuid.UUID | None


def parts(manifest: Manifest) -> tuple[Part, ...]:
    """Every component of the manifest, in its order (SchemaError for an identifier that is not
    a name, or a name given twice; LimitExceededError beyond MAX_COMPONENTS)."""
    components = manifest.common.components
    if len(components) > MAX_COMPONENTS:
        raise LimitExceededError(f"the manifest lists {len(components)} components (at most "
                                 f"{MAX_COMPONENTS})")
    params, _ = _component_parameters(manifest)
    out = []
    for index, identifier in enumerate(components):
        p = params[index]
        digest, vendor, klass = (p.get(suit.PARAM_IMAGE_DIGEST), p.get(suit.PARAM_VENDOR_ID),
                                 p.get(suit.PARAM_CLASS_ID))
        out.append(Part(
            name=component_name(identifier), index=index,
            digest=Digest.decode(digest, "image-digest") if digest else None,
            size=p.get(suit.PARAM_IMAGE_SIZE), uri=p.get(suit.PARAM_URI),
            vendor_id=uuid.UUID(bytes=vendor) if isinstance(vendor, bytes) else None,
            class_id=uuid.UUID(bytes=klass) if klass else None))
    if len({part.name for part in out}) != len(out):
        raise SchemaError("the manifest lists a component twice")
    return tuple(out)

"""`sfu repo status`: each role's keys, threshold, newest version and expiry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class RoleStatus:
    """One TUF role as the repository stands. `version`/`expires` are None for a role never
    published (a repository whose first publish failed)."""

    role: str
    keyids: list[str]
    threshold: int
    version: int | None
    expires: datetime | None
    now: datetime
    #: The references `publish` uses by default (online roles only).
    remembered: list[str]

    @property
    def seconds_left(self) -> int | None:
        """Seconds until expiry; negative once expired."""
        return None if self.expires is None else int((self.expires - self.now).total_seconds())

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "keyids": self.keyids, "threshold": self.threshold,
                "version": self.version,
                "expires": self.expires.isoformat().replace("+00:00", "Z")
                if self.expires else None,
                "seconds_left": self.seconds_left, "expired": (self.seconds_left or 0) < 0,
                "keys": self.remembered}

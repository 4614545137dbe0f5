"""A verified trust update against the trust store: who must have signed it, and the store it
makes. Pure functions; `SecureState.update_trust` adds what the rest of the state demands
(the confirmed image's signer, the quarantine, a trial) and the kernel writes it all at once.

* Every role whose active anchors or threshold the update changes must be signed by at least
  that role's CURRENT threshold of distinct active anchors; a role with no active anchor left
  is re-rooted by the operator role's threshold instead.
* An update that changes nothing is refused (it would only raise the version).
* A revoked anchor never comes back; an anchor the update omits from a role it names is
  revoked (kept, so the revocation itself is protected by the storage counter).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sfupdate.errors import DeviceStateError, ThresholdError
from sfupdate.formats.remote.trust import RoleKeys, TrustUpdate, public_key
from sfupdate.secure.board.records import Role, TrustAnchor, TrustStore

#: Anchors, active and revoked, one role may accumulate in secure storage.
MAX_STORED_ANCHORS: Final = 64


def _kids(keys: Sequence[bytes]) -> dict[bytes, bytes]:
    """Key ID -> SPKI DER of each key of an update entry."""
    return {public_key(spki).kid: spki for spki in keys}


def _changes(trust: TrustStore, entry: RoleKeys) -> bool:
    role = Role(entry.role)
    return (set(_kids(entry.keys)) != {k.kid for k in trust.keys(role)}
            or entry.threshold != trust.threshold(role))


def authorize(trust: TrustStore, update: TrustUpdate, signers: Sequence[bytes]) -> None:
    """ThresholdError unless, for every role the update changes, enough distinct active
    anchors of the role (or, for a role with none, of the operator role) are among the
    `signers` (the key IDs whose signatures verified)."""
    changed = [entry for entry in update.roles if _changes(trust, entry)]
    if not changed:
        raise DeviceStateError("the trust update changes no anchor and no threshold")
    for entry in changed:
        role = Role(entry.role)
        authority = role if trust.keys(role) else Role.OPERATOR
        need, have = trust.threshold(authority), trust.count_signers(authority, signers)
        if have < need:
            raise ThresholdError(f"changing the {role.value} anchors needs signatures by "
                                 f"{need} distinct active {authority.value} anchors; {have} "
                                 "verified")


def rotated(trust: TrustStore, update: TrustUpdate) -> TrustStore:
    """The store the update makes: each named role holds exactly the update's keys as active
    anchors, with its threshold; the version becomes the update's."""
    anchors = list(trust.anchors)
    thresholds = dict(trust.thresholds or ())
    for entry in update.roles:
        role = Role(entry.role)
        wanted = _kids(entry.keys)
        mine = [a for a in anchors if a.role is role]
        back = [a.kid for a in mine if a.revoked and a.kid in wanted]
        if back:
            raise DeviceStateError(f"key {back[0].hex()[:16]} was revoked as a {role.value} "
                                   "anchor: a revoked anchor never comes back")
        known = {a.kid for a in mine}
        anchors = [TrustAnchor(a.role, a.spki, a.revoked or a.kid not in wanted)
                   if a.role is role else a for a in anchors]
        anchors += [TrustAnchor(role, spki) for kid, spki in wanted.items()
                    if kid not in known]
        if sum(a.role is role for a in anchors) > MAX_STORED_ANCHORS:
            raise DeviceStateError(f"the {role.value} role would hold more than "
                                   f"{MAX_STORED_ANCHORS} anchors, revoked ones included")
        thresholds[role] = entry.threshold
    return TrustStore(tuple(anchors), update.version,
                      tuple(sorted(thresholds.items(), key=lambda pair: pair[0].value)))

"""The update repository: a static tree of SFUIs with a signed TUF index, and a dev server."""

from sfupdate.authoring.repo.repository import Entry, Listed, Repository
from sfupdate.authoring.repo.server import RepoServer

__all__ = ["Entry", "Listed", "RepoServer", "Repository"]

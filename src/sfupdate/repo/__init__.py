"""The update repository: a static tree of SFUIs with a signed TUF index, and a dev server."""

from sfupdate.repo.repository import Entry, Listed, Repository
from sfupdate.repo.server import RepoServer

__all__ = ["Entry", "Listed", "RepoServer", "Repository"]

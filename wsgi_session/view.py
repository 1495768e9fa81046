"""The piece the framework adapters share: their session object over the request's Session.

Flask's ``flask.session`` and Django's ``request.session`` are views of the one
:class:`~wsgi_session.session.Session` the middleware put in the environ. They
differ in their own API (Flask's ``permanent``, Django's ``set_expiry``), not
in the mapping and the change tracking, which are forwarded here once.
"""

from __future__ import annotations

from typing import Any

from wsgi_session.session import Session


class SessionView:
    """The item access and the change tracking of ``raw``, the request's Session.

    Not a ``Mapping`` itself (no ``__len__``): a framework session object that
    is not one (Django's) stays true and hashable. Flask's, a ``MutableMapping``,
    gets ``pop``, ``keys`` and the rest from it.
    """

    def __init__(self, raw: Session) -> None:
        self.raw = raw

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.raw[key] = value

    def __delitem__(self, key: str) -> None:
        del self.raw[key]

    def __contains__(self, key: object) -> bool:
        return key in self.raw

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    def clear(self) -> None:
        self.raw.clear()

    @property
    def accessed(self) -> bool:
        """True once the request used the session (the response then varies on Cookie)."""
        return self.raw.accessed

    @accessed.setter
    def accessed(self, value: bool) -> None:
        # Flask sets this on every use of flask.session; loading is what makes it true.
        if value:
            self.raw.origin  # noqa: B018 -- reading it loads the session

    @property
    def modified(self) -> bool:
        """True when this request changed the session; assign ``True`` to force a save."""
        return self.raw.modified

    @modified.setter
    def modified(self, value: bool) -> None:
        self.raw.modified = value  # loads the session, so the forced save is not skipped

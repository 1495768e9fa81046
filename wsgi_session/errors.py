"""Exceptions raised by wsgi_session."""

from __future__ import annotations


class SessionError(Exception):
    """Base class of every error wsgi_session raises on purpose."""


class StoreUnavailable(SessionError):
    """The session store could not be reached or did not answer in time.

    Every store raises this one type, whatever its client library raised, so
    the middleware's ``on_store_error`` policy works the same for all of them.
    """


class StoreWriteFailed(SessionError):
    """The store answered but refused a write (for example: value too large)."""


class SessionTooLarge(SessionError, ValueError):
    """The serialized session does not fit where it has to be kept."""


class SessionSealed(SessionError, RuntimeError):
    """The session was changed after the response headers were sent.

    The change cannot be persisted any more, so it is refused loudly instead
    of vanishing.
    """


class ConfigurationError(SessionError, ValueError):
    """A setting has a value that cannot work; the message names the setting."""

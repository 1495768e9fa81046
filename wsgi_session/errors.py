"""Exceptions raised by wsgi_session."""

from __future__ import annotations

import re
from collections.abc import Mapping


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


def renamed(message: str, names: Mapping[str, str]) -> str:
    """``message`` with the middleware's option names replaced by ``names[option]``.

    Framework adapters use it so an error names the setting the user wrote
    (``SESSION_COOKIE_SAMESITE``), not the option it became (``cookie_samesite``).
    """
    options = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    return options.sub(lambda found: names[found[1]], message)

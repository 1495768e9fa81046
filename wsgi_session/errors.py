"""Exceptions raised by wsgi_session, and the one check of a number of seconds."""

from __future__ import annotations

from collections.abc import Mapping

MAX_SECONDS = 100 * 365 * 24 * 3600  # beyond this, timestamps overflow what stores and cookies hold


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


class SessionsUnsupported(SessionError, RuntimeError):
    """``sessions.of()``/``revoke()`` cannot work with this setup; the message says why."""


class ConfigurationError(SessionError, ValueError):
    """A setting has a value that cannot work.

    The settings it is about are data, not text to search: ``settings`` lists
    them, the one at fault first (``setting``), and ``template`` writes each as
    ``{name}``. A framework adapter calls :meth:`naming` to word the message
    with the names its users wrote (``SESSION_COOKIE_SAMESITE`` for
    ``cookie_samesite``). ``values`` fill the template's other fields; they are
    arguments of ``str.format``, never parsed as a template themselves. Without
    settings and values the template is the message as it is.
    """

    def __init__(self, template: str, *settings: str, **values: object) -> None:
        self.template = template
        self.settings = settings
        self.values = values
        super().__init__(self.naming({}))

    @property
    def setting(self) -> str | None:
        """The setting at fault, ``None`` for a problem no one setting causes."""
        return self.settings[0] if self.settings else None

    def naming(self, names: Mapping[str, str]) -> str:
        """The message with every setting called ``names[setting]`` (its own name if absent)."""
        if not (self.settings or self.values):
            return self.template
        shown = {setting: names.get(setting, setting) for setting in self.settings}
        return self.template.format(**self.values, **shown)


def check_seconds(
    setting: str, value: object, *, minimum: float, whole: bool = True, owner: str = ""
) -> None:
    """Raise a ``ConfigurationError`` unless ``value`` is seconds from ``minimum`` to MAX_SECONDS.

    ``whole=False`` also takes fractions, and then refuses ``minimum`` itself
    (a network timeout of 0 would never wait). ``owner`` starts the message
    (``"MemcachedStore "``).
    """
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        number = "whole number" if whole else "number"
        raise ConfigurationError(
            f"{owner}{{{setting}}} must be a {number} of seconds, not {{kind}} {{value!r}}",
            setting,
            kind=type(value).__name__,
            value=value,
        )
    # Comparisons, not math.isfinite: an int too big for a float must not raise OverflowError.
    # NaN fails both comparisons, infinity the second.
    if whole and not minimum <= value <= MAX_SECONDS:
        bounds = f"between {minimum} and {MAX_SECONDS}"
    elif not whole and not minimum < value <= MAX_SECONDS:
        bounds = f"over {minimum} and at most {MAX_SECONDS}"
    else:
        return
    raise ConfigurationError(
        f"{owner}{{{setting}}} must be {bounds} seconds, not {{value}}", setting, value=value
    )

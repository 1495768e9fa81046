"""Value kinds: how a setting's text is parsed, what it allows, how a value is shown."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from wsgi_session.stores.base import parse_flag

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:\d+[dhms])+")
HIDDEN = "(hidden)"


class Kind:
    """Parses a setting's text (``ValueError`` says why not) and shows a value."""

    allowed = ""

    def parse(self, text: str) -> object:
        raise NotImplementedError

    def show(self, value: object) -> str:
        return str(value)


class Text(Kind):
    allowed = "any text"

    def __init__(self, unset: str = "") -> None:
        self.unset = unset

    def parse(self, text: str) -> object:
        return text

    def show(self, value: object) -> str:
        return self.unset if value is None else str(value)


class Secret(Kind):
    allowed = (
        "a long random string, such as the output of "
        "python -c 'import secrets; print(secrets.token_hex(32))'"
    )

    def parse(self, text: str) -> object:
        return text

    def show(self, value: object) -> str:
        return f"{HIDDEN} {len(str(value))} characters" if value else "(not set)"


class SecretList(Kind):
    allowed = "a comma-separated list of former secret keys"

    def parse(self, text: str) -> object:
        return [key.strip() for key in text.split(",") if key.strip()]

    def show(self, value: object) -> str:
        count = len(value) if isinstance(value, list) else 0
        return f"{HIDDEN} {count} key{'s' if count != 1 else ''}" if count else "(none)"


class Flag(Kind):
    """true/false; with ``unset_word`` that word (e.g. ``auto``) means ``None``."""

    def __init__(self, unset_word: str | None = None, unset_text: str = "") -> None:
        self.unset_word = unset_word
        self.unset_text = unset_text
        self.allowed = "true or false (also yes/no, on/off, 1/0)" + (
            f", or {unset_word}" if unset_word else ""
        )

    def parse(self, text: str) -> object:
        if self.unset_word is not None and text.lower() == self.unset_word:
            return None
        return parse_flag(text)

    def show(self, value: object) -> str:
        if value is None:
            return self.unset_text
        return "true" if value else "false"


class Choice(Kind):
    """One of a few words (case-insensitive), each standing for a value."""

    def __init__(self, choices: Mapping[str, object]) -> None:
        self.choices = dict(choices)
        self.allowed = ", ".join(self.choices)

    def parse(self, text: str) -> object:
        for word, value in self.choices.items():
            if text.lower() == word.lower():
                return value
        raise ValueError("not one of the choices")

    def show(self, value: object) -> str:
        return next(word for word, known in self.choices.items() if known == value)


class Duration(Kind):
    """Whole seconds: ``900``, ``45s``, ``30m``, ``2h``, ``14d`` or ``1h30m``."""

    def __init__(self, positive: bool, optional: bool = False) -> None:
        self.positive = positive
        self.optional = optional
        self.allowed = (
            f"a duration{' above zero' if positive else ''}, in seconds (900) or with units "
            "d, h, m, s (14d, 2h, 30m, 45s, 1h30m)"
        ) + (", or off" if optional else "")

    def parse(self, text: str) -> object:
        word = text.lower().replace(" ", "")
        if self.optional and word in ("off", "none"):
            return None
        seconds = parse_duration(word)
        if self.positive and not seconds:
            raise ValueError("must be above zero")
        return seconds

    def show(self, value: object) -> str:
        if value is None:
            return "off"
        assert isinstance(value, int)
        return format_duration(value)


def parse_duration(text: str) -> int:
    """Seconds in ``text`` (``900``, ``14d``, ``2h``, ``1h30m``); ``ValueError`` if none."""
    if text.isdigit():
        return int(text)
    if not _DURATION.fullmatch(text):
        raise ValueError("not a duration")
    return sum(int(number) * _UNITS[unit] for number, unit in re.findall(r"(\d+)(\D)", text))


def format_duration(seconds: int) -> str:
    """``1209600`` → ``14d``, ``5400`` → ``1h30m``, ``0`` → ``0s``."""
    parts = []
    for unit, size in _UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


class Number(Kind):
    def __init__(self, convert: Callable[[str], float | int]) -> None:
        self.convert = convert
        self.allowed = "a whole number" if convert is int else "a number"

    def parse(self, text: str) -> object:
        return self.convert(text)

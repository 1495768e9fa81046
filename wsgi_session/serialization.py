"""Tagged JSON: session values that plain JSON would lose, without pickle.

A value JSON cannot express is written as a one-key object whose key is a tag,
``{" t": [1, 2]}`` for the tuple ``(1, 2)``. A dict that happens to look like a
tagged value is itself wrapped (``{" di": {...}}``) so it reads back unchanged.
Loading only ever builds the types listed here; nothing is imported or called
by name, which is what makes it safe for data an attacker may have written.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

try:
    from markupsafe import Markup as _Markup
except ImportError:  # markupsafe is optional: Markup-like values then load as str
    _Markup = None  # type: ignore[assignment, misc]

PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})
"""Types JSON keeps as they are, and which cannot change in place: no tagging, no copying."""

EMPTY = "{}"
"""What :func:`dumps` writes for a session without data: stored or sent, it means no session."""

_decoders: dict[str, Callable[[Any], Any]] = {
    " t": tuple,
    " s": set,
    " f": frozenset,
    " b": lambda value: base64.b64decode(value),
    " dt": datetime.fromisoformat,
    " d": date.fromisoformat,
    " u": UUID,
    " D": Decimal,
    " m": _Markup if _Markup is not None else str,
    " di": lambda pairs: {_str_key(key): value for key, value in pairs},
}


def _str_key(key: Any) -> str:
    if type(key) is not str:
        raise TypeError(f"dict key {key!r} is not a str")
    return key


def _tag(value: Any, where: str) -> Any:
    """Return ``value`` as plain JSON types, tagging what JSON would lose."""
    kind = type(value)
    if kind in PLAIN_TYPES:
        return value
    if kind is dict:
        return _tag_dict(value, where)
    if kind is list:
        return [_tag(item, where) for item in value]
    if kind is tuple:
        return {" t": [_tag(item, where) for item in value]}
    if hasattr(value, "__html__"):
        return {" m": str(value.__html__())}
    if isinstance(value, (set, frozenset)):
        items = [_tag(item, where) for item in _stable_order(value)]
        return {" f" if isinstance(value, frozenset) else " s": items}
    if isinstance(value, bytes):
        return {" b": base64.b64encode(value).decode("ascii")}
    if isinstance(value, datetime):  # before date: a datetime is a date
        return {" dt": value.isoformat()}
    if isinstance(value, date):
        return {" d": value.isoformat()}
    if isinstance(value, UUID):
        return {" u": str(value)}
    if isinstance(value, Decimal):
        return {" D": str(value)}
    if isinstance(value, (str, int, float)):  # str/int/float subclasses, e.g. enums
        return value
    if isinstance(value, Mapping):
        return _tag_dict(value, where)
    raise TypeError(
        f"session value {where} has type {kind.__qualname__!r}, which cannot be stored: "
        "use JSON types, tuple, set, bytes, datetime, date, UUID, Decimal or Markup"
    )


def _tag_dict(value: Mapping[Any, Any], where: str) -> dict[str, Any]:
    tagged: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) is not str:
            raise TypeError(
                f"session value {where} has a dict key {key!r} of type "
                f"{type(key).__qualname__!r}: only str keys survive JSON"
            )
        tagged[key] = item if type(item) in PLAIN_TYPES else _tag(item, f"{where}[{key!r}]")
    return _escape(tagged)


def _escape(tagged: dict[str, Any]) -> dict[str, Any]:
    """Wrap a dict that would read back as a tagged value.

    The wrapper holds key/value pairs, not an object, because JSON objects are
    untagged innermost first and the inner one would be taken for a tag.
    """
    if len(tagged) == 1 and next(iter(tagged)) in _decoders:
        return {" di": list(tagged.items())}
    return tagged


def _stable_order(items: set[Any] | frozenset[Any]) -> list[Any]:
    """Sorted when possible so an unchanged set serializes to the same text."""
    try:
        return sorted(items)
    except TypeError:
        return list(items)


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        key = next(iter(obj))
        decode = _decoders.get(key)
        if decode is not None:
            return decode(obj[key])
    return obj


def dumps(data: Mapping[str, Any]) -> str:
    """Serialize a session's data; ``TypeError`` names any value that cannot be stored."""
    if type(data) is dict:
        for key, value in data.items():
            if type(key) is not str or type(value) not in PLAIN_TYPES:
                break
        else:
            # Most sessions: str keys and plain values, nothing to tag, so no copy
            # to make; the loop below writes the same text for them. Only a dict of
            # one key can read back as a tagged value: no _escape call for the others.
            return _to_json(_escape(data) if len(data) == 1 else data)
    tagged: dict[str, Any] = {}
    for key, value in data.items():
        if type(key) is not str:
            raise TypeError(f"session key {key!r} is not a str")
        if type(value) in PLAIN_TYPES:  # most values: no call, no error-path text
            tagged[key] = value
            continue
        try:
            tagged[key] = _tag(value, f"[{key!r}]")
        except RecursionError:
            raise TypeError(f"session value [{key!r}] is nested too deeply to store") from None
    return _to_json(_escape(tagged))


# Made once: json.dumps() with options builds a new encoder on every call.
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
# And JSONEncoder.encode() builds a C encoder on every call: this one is made once too.
# No circular-reference markers: what reaches it is the fresh copy _tag() made,
# whose recursion stops at a cycle first.
_to_json: Callable[[Any], str]
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
if _c_make_encoder is not None:
    _c_encode = _c_make_encoder(
        None, _encoder.default, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )

    def _to_json(value: Any) -> str:
        return "".join(_c_encode(value, 0))

else:  # no C accelerator (not CPython)
    _to_json = _encoder.encode


# The decoder's scanner, called directly: dumps() writes no whitespace around
# the object, so JSONDecoder.decode()'s two whitespace regexes have nothing to skip.
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder(object_hook=_untag).scan_once  # type: ignore[attr-defined]


def loads(text: str | bytes) -> dict[str, Any]:
    """Load what :func:`dumps` wrote. Raises ``ValueError`` for anything else."""
    try:
        if not isinstance(text, str):
            text = text.decode("utf-8")
        data, end = _scan(text, 0)
    except StopIteration:
        raise ValueError("malformed session data: no JSON value") from None
    except (
        TypeError,
        AttributeError,
        ArithmeticError,
        RecursionError,
        UnicodeDecodeError,
    ) as error:
        raise ValueError(f"malformed session data: {error}") from error
    if end != len(text):
        raise ValueError("malformed session data: more after the JSON value")
    if type(data) is not dict:
        raise ValueError("malformed session data: not an object")
    return data

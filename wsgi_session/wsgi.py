"""The WSGI types (PEP 3333) every layer of the package speaks, spelled once."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication
else:  # typeshed's names exist only for type checkers
    StartResponse = WSGIApplication = Any

__all__ = ["ExcInfo", "Headers", "StartResponse", "WSGIApplication", "WSGIEnvironment", "Write"]

WSGIEnvironment = dict[str, Any]
Headers = list[tuple[str, str]]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]
Write = Callable[[bytes], object]

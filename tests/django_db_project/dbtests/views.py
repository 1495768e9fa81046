"""Views that run in the request's transaction (ATOMIC_REQUESTS) and use the session."""

from __future__ import annotations

import threading
from typing import Any

from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse

from wsgi_session.django.engine import SessionStore

seen: dict[str, Any] = {}
"""What the last view saw, for the test to look at."""


def count(request: HttpRequest) -> HttpResponse:
    request.session["n"] = request.session.get("n", 0) + 1
    return HttpResponse(str(request.session["n"]))


def read(request: HttpRequest) -> HttpResponse:
    return JsonResponse(dict(request.session.items()))


def save_then_fail(request: HttpRequest) -> HttpResponse:
    request.session["saved"] = "before the failure"
    request.session.save()
    seen["key"] = request.session.session_key
    raise RuntimeError("the view fails after saving the session: its transaction rolls back")


def save_while_another_saves(request: HttpRequest) -> HttpResponse:
    """Save, then let another request's save of the same session run while this one's
    transaction is still open; report whether it finished while it was."""
    request.session["mine"] = 1
    request.session.save()
    key = request.session.session_key

    def other() -> None:
        try:
            session = SessionStore(key)
            session["theirs"] = 2
            session.save()
        finally:
            connections.close_all()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(1.5)
    seen["finished while the view's transaction was open"] = not thread.is_alive()
    seen["thread"] = thread
    return HttpResponse("ok")

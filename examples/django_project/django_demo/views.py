"""The demo's views: a page for logged-in users and a form that flashes a message."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Who is logged in, how often they came, their messages and session expiry."""
    request.session["visits"] = request.session.get("visits", 0) + 1
    return render(request, "home.html", {"session": request.session})


@login_required
@require_POST
def note(request: HttpRequest) -> HttpResponse:
    """Flash the posted text; the next page shows it once."""
    messages.success(request, request.POST.get("text") or "Noted.")
    return redirect("home")

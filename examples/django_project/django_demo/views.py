"""The demo's views: a home page, a message to flash, a password change that signs out."""

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from wsgi_session.django import sessions


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


@login_required
@require_POST
def password(request: HttpRequest) -> HttpResponse:
    """Change the password, then sign out every other session of the user at once."""
    form = PasswordChangeForm(request.user, request.POST)
    if not form.is_valid():
        messages.error(
            request, " ".join(error for errors in form.errors.values() for error in errors)
        )
        return redirect("home")
    user = form.save()
    update_session_auth_hash(request, user)  # this session stays logged in
    ended = sessions(request).revoke(user.pk, keep=request.session)
    messages.success(request, f"Password changed; {ended} other session(s) signed out.")
    return redirect("home")

"""Migration sources: the systems whose sessions a deployment adopts (docs/migrating.md).

``base``: :class:`Claim`, :class:`Source` and what a source is given
(:class:`Host`); one module per old system, each importing that system's
own code only when it is used: ``stores`` (ours), ``flask_cookies``
(Flask's signed cookies), ``django_engines`` (Django's session engines),
``flask_session`` (Flask-Session 0.7 and later).
"""

from __future__ import annotations

from wsgi_session.migrate.base import Claim, Host, OldCookie, Source, SourceFactory

__all__ = ["Claim", "Host", "OldCookie", "Source", "SourceFactory"]

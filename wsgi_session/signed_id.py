"""A server-side session's cookie: its id signed, marked when the session is not permanent.

``<id>.<signature>`` for a permanent session (and for every cookie issued
before the mark existed), ``<id>.b.<signature>`` for one that is not, the
mark signed with the id. A request that never uses its session then knows,
without asking the store, that its cookie has no Max-Age to push back
(Flask's ``SESSION_REFRESH_EACH_REQUEST``). Either way a cookie is only ever
the exact text signing gave. The backend and the migration source that
reads an old deployment of ours share this one reading of it.
"""

from __future__ import annotations

import re

from wsgi_session.cookies import CookieSigner
from wsgi_session.session import ID_LENGTH

BROWSER_SESSION = ".b"
_MARKED = BROWSER_SESSION + "."
_MARKED_LENGTH = ID_LENGTH + len(BROWSER_SESSION)
# The id, the mark or not, a dot, the signature: anything else is refused before any
# HMAC or store work.
SIGNED_ID = re.compile(
    rf"[A-Za-z0-9_-]{{{ID_LENGTH}}}(?:{re.escape(BROWSER_SESSION)})?\.[A-Za-z0-9_-]{{20,100}}"
)


def verify_signed_id(signer: CookieSigner, cookie: str) -> tuple[str, bool] | None:
    """``(session id, signed with the current key)``; ``None`` if ``cookie`` is not one."""
    if not SIGNED_ID.fullmatch(cookie):
        return None  # refused before any HMAC work
    # The pattern placed the dots and allowed only ASCII: no need to search for them.
    if not cookie.startswith(_MARKED, ID_LENGTH):
        return signer.verify(cookie[:ID_LENGTH], cookie[ID_LENGTH + 1 :])
    verified = signer.verify(cookie[:_MARKED_LENGTH], cookie[_MARKED_LENGTH + 1 :])
    return None if verified is None else (cookie[:ID_LENGTH], verified[1])


def sign_id(signer: CookieSigner, session_id: str, permanent: bool) -> str:
    """The cookie for ``session_id``; marked when its session is not permanent."""
    return signer.sign(session_id if permanent else session_id + BROWSER_SESSION)


def is_marked(cookie: str) -> bool:
    """Whether ``cookie`` carries the mark (unverified: what its text says)."""
    return cookie.startswith(_MARKED, ID_LENGTH)

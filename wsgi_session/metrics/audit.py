"""Audit events: a session created, regenerated (login), destroyed (logout), revoked.

One line each on the logger ``wsgi_session.audit``, at INFO, off unless the
middleware's ``audit=True``. A line carries the owner's keyed hash (the one
the per-user index keeps, never the owner's id) and the client fields that
index keeps (the user agent and the /24 or /48 network, recorded with
``record_client=True``); never a session id, a cookie or session data. The
same fields are on the log record as ``record.audit`` (a dict), for a JSON
formatter.
"""

from __future__ import annotations

import json
import logging
from typing import Literal

AUDIT_LOGGER = "wsgi_session.audit"

AuditEvent = Literal["created", "regenerated", "destroyed", "revoked"]
AUDIT_EVENTS: tuple[AuditEvent, ...] = ("created", "regenerated", "destroyed", "revoked")


class AuditLog:
    """Writes the audit lines; ``logger`` defaults to ``wsgi_session.audit``."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(AUDIT_LOGGER)

    def event(
        self,
        event: AuditEvent,
        owner: str | None,
        client: tuple[str, str] = ("", ""),
        count: int | None = None,
    ) -> None:
        """Log ``event`` for the owner hashed ``owner`` (``None``: nobody's session).

        ``client``: ``(user agent, network)`` as the index keeps them; ``count``:
        how many sessions a revocation ended.
        """
        if not self.logger.isEnabledFor(logging.INFO):
            return
        agent, address = client
        fields: dict[str, object] = {"event": event, "owner": owner}
        parts = [f"owner={owner or '-'}"]
        if agent or address:
            fields.update(user_agent=agent, address=address)
            # The user agent is the client's text: quoted, so that it cannot forge a line.
            parts += [f"address={address or '-'}", f"user_agent={json.dumps(agent)}"]
        if count is not None:
            fields["count"] = count
            parts.append(f"count={count}")
        self.logger.info("session %s %s", event, " ".join(parts), extra={"audit": fields})

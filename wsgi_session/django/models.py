"""The ``django://`` store's table, as a model so that a migration creates it.

The store reads and writes it with one SQL statement an operation, not through
this model; the model is its schema, and the admin or a shell may look at it.
"""

from __future__ import annotations

from django.db import models

from wsgi_session.django.store import TABLE


class SessionRecord(models.Model):
    """One session record: the hash of its id, the encoded record, its version and expiry."""

    key: models.CharField[str, str] = models.CharField(max_length=128, primary_key=True)
    data: models.BinaryField[bytes, bytes] = models.BinaryField()
    version: models.BigIntegerField[int, int] = models.BigIntegerField()
    expires: models.FloatField[float, float] = models.FloatField(db_index=True)  # POSIX seconds
    # None: nobody's session
    owner: models.CharField[str | None, str | None] = models.CharField(
        max_length=128, null=True, db_index=True
    )

    class Meta:
        db_table = TABLE
        verbose_name = "session record"

    def __str__(self) -> str:
        return str(self.key)

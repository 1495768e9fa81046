"""The ``django://`` store's table."""

from __future__ import annotations

from typing import ClassVar

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: ClassVar[list[tuple[str, str]]] = []
    operations: ClassVar[list[migrations.operations.base.Operation]] = [
        migrations.CreateModel(
            name="SessionRecord",
            fields=[
                ("key", models.CharField(max_length=128, primary_key=True, serialize=False)),
                ("data", models.BinaryField()),
                ("version", models.BigIntegerField()),
                ("expires", models.FloatField(db_index=True)),
                ("owner", models.CharField(db_index=True, max_length=128, null=True)),
            ],
            options={"verbose_name": "session record", "db_table": "wsgi_session_record"},
        ),
    ]

"""Each layer imports only what is below it (DESIGN's table), checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "wsgi_session"


def imported(path: Path) -> set[str]:
    """The ``wsgi_session`` modules ``path`` imports, wherever in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] == "wsgi_session"}


# What a layer must never import: the layers above it.
_ABOVE_BACKENDS = ("wsgi_session.view", "wsgi_session.middleware", "wsgi_session.config")


@pytest.mark.parametrize("path", sorted((PACKAGE / "backends").glob("*.py")), ids=lambda p: p.name)
def test_backends_import_nothing_above_them(path: Path) -> None:
    above = {name for name in imported(path) if name.startswith(_ABOVE_BACKENDS)}
    assert not above, above


def test_the_decision_imports_only_session_and_lifetime() -> None:
    assert imported(PACKAGE / "decision.py") <= {"wsgi_session.session", "wsgi_session.lifetime"}


@pytest.mark.parametrize("path", sorted((PACKAGE / "stores").glob("*.py")), ids=lambda p: p.name)
def test_stores_import_only_the_protocol_and_the_errors(path: Path) -> None:
    allowed = {"wsgi_session.stores.base", "wsgi_session.errors", "wsgi_session.stores"}
    assert imported(path) <= allowed, imported(path)


@pytest.mark.parametrize("name", ["base.py", "audit.py"])
def test_the_metrics_protocol_and_the_audit_log_import_nothing_of_the_package(name: str) -> None:
    assert imported(PACKAGE / "metrics" / name) == set()


@pytest.mark.parametrize("name", ["prometheus.py", "opentelemetry.py"])
def test_a_metrics_adapter_imports_only_the_protocol(name: str) -> None:
    assert imported(PACKAGE / "metrics" / name) == {"wsgi_session.metrics.base"}


# Our own codec is the old system's library when the source is one of our stores.
_OWN_CODEC = {
    "wsgi_session.cookies",
    "wsgi_session.record",
    "wsgi_session.sealing",
    "wsgi_session.serialization",
    "wsgi_session.session",
    "wsgi_session.signed_id",
}


@pytest.mark.parametrize("path", sorted((PACKAGE / "migrate").glob("*.py")), ids=lambda p: p.name)
def test_migration_sources_import_only_their_base_the_store_protocol_and_errors(
    path: Path,
) -> None:
    allowed = {"wsgi_session.migrate.base", "wsgi_session.stores.base", "wsgi_session.errors"}
    if path.name in ("stores.py", "bulk.py"):
        allowed |= _OWN_CODEC
    if path.name == "__init__.py":
        allowed.add("wsgi_session.migrate")
    assert imported(path) <= allowed, imported(path)

"""The ``wsgi-session`` command: demo, gc, check, stats, migrate, sessions and revoke."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

from wsgi_session.backends.owners import Sessions
from wsgi_session.config import ENV_PREFIX, REDIS_SCHEMES, SETTING_NAMES, STORE_URLS, Config
from wsgi_session.errors import SessionError
from wsgi_session.lifetime import DAY, Lifetime
from wsgi_session.record import Record
from wsgi_session.serialization import EMPTY
from wsgi_session.stores.base import RecordScan, Store

T = TypeVar("T")

SETTINGS_HELP = "\n\n".join(
    textwrap.fill(paragraph, 78, break_long_words=False)
    for paragraph in (
        f"Settings are environment variables named {ENV_PREFIX}<SETTING> (or with "
        f"--prefix): {', '.join(SETTING_NAMES)}.",
        f"STORE is a URL: {STORE_URLS}.",
    )
)

# Stores that have nothing for gc to purge, and why.
_SELF_EXPIRING = {
    "memcached": "memcached drops expired records by itself",
    **dict.fromkeys(REDIS_SCHEMES, "Redis expires records by itself (each has its TTL)"),
    "cookie": "cookie sessions live in the browsers; nothing is stored on the server",
    "memory": "the memory store lives inside each server process, out of this command's reach",
}

Command = Callable[[argparse.Namespace], int]
CLI_OWNER_KEY = "owner"  # any key: these commands read owners' hashes, never session data


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    command: Command = args.command
    try:
        return command(args)
    except SessionError as exc:
        print(f"wsgi-session {args.name}: error: {exc}", file=sys.stderr)
        return 1


def demo(args: argparse.Namespace) -> int:
    """Serve the demo application until interrupted."""
    from werkzeug.serving import run_simple

    from wsgi_session.demo import Demo

    environ = dict(os.environ)
    secret = args.prefix + "SECRET_KEY"
    if not environ.get(secret, "").strip():
        environ[secret] = secrets.token_hex(32)
        print(f"{secret} is not set: using a random one, so sessions end when the demo stops")
    config = Config.load((environ, args.prefix))
    print(f"sessions are stored in {config.store_description}")
    run_simple(args.host, args.port, Demo(config), threaded=True)
    return 0


def gc(args: argparse.Namespace) -> int:
    """Delete the expired records from the configured store."""
    config = Config.load((os.environ, args.prefix), require_secret=False)
    reason = _SELF_EXPIRING.get(config.store_scheme)
    purge: Callable[[], int] | None = getattr(config.store, "purge_expired", None)
    if reason is not None or purge is None:
        shown = config.shown_store_url
        print(f"nothing to purge in {shown}: {reason or 'it expires records itself'}")
        return 0
    missing = _missing_database(config.store)
    if missing is not None:
        # Creating it here would make it belong to whoever runs gc (often root).
        print(f"wsgi-session gc: no session database at {missing}", file=sys.stderr)
        return 1
    count = purge()
    plural = "" if count == 1 else "s"
    print(f"purged {count} expired session record{plural} from {config.store_description}")
    return 0


def check(args: argparse.Namespace) -> int:
    """Validate the settings, reach the store, show the effective configuration."""
    config = Config.load((os.environ, args.prefix))
    effective = config.effective()
    width = max(map(len, effective))
    for name, value in effective.items():
        print(f"{name:<{width}}  {value}")
    store = config.store
    missing = _missing_database(store)
    if missing is not None:
        print(
            f"\nok: the settings are valid; there is no session database at {missing} yet: "
            "the application creates it on first use (as its own user)"
        )
    elif isinstance(store, Store):
        store.load(secrets.token_hex(32))  # an unknown key: answers None if the store is up
        print(f"\nok: the settings are valid and the store answered ({config.shown_store_url})")
    else:
        print("\nok: the settings are valid (this store has no server to reach)")
    adoption = getattr(config.middleware(_unused_app).backend, "adoption", None)
    if adoption is not None:
        adoption.source.ping()  # raises StoreUnavailable: reported, exit status 1
        print(
            f"ok: migrating from {adoption.source.description}, which answered; old sessions "
            f"are adopted on their first request (grace {adoption.grace} s). Remove "
            f"{args.prefix}MIGRATE_FROM once the log counts no more adoptions"
        )
    return 0


def migrate(args: argparse.Namespace) -> int:
    """Copy every live session of one store of ours into another."""
    from wsgi_session.config import store_from_url
    from wsgi_session.migrate.bulk import Summary, copy_records
    from wsgi_session.stores.base import KeyedScan

    source, target = store_from_url(args.source), store_from_url(args.target)
    missing = _missing_database(source)
    if missing is not None:
        print(f"wsgi-session migrate: no session database at {missing}", file=sys.stderr)
        return 1
    if not isinstance(source, KeyedScan):
        print(
            f"wsgi-session migrate: {type(source).__name__} cannot list its records; "
            "copy from sqlite:// or redis:// (a memcached deployment migrates on access: "
            "MIGRATE_FROM)",
            file=sys.stderr,
        )
        return 1
    if not isinstance(target, Store):
        print("wsgi-session migrate: the target must be a server-side store", file=sys.stderr)
        return 1
    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    after = None
    if checkpoint is not None and checkpoint.exists():
        after = checkpoint.read_text(encoding="ascii").strip() or None
        print(f"resuming after {after}")
    checkpoint_every = 100  # records between two notes of the last key copied

    def progress(summary: Summary) -> None:
        due = summary.seen % checkpoint_every == 0
        if due and checkpoint is not None and summary.last_key is not None:
            checkpoint.write_text(summary.last_key, encoding="ascii")

    records = _progress(source.scan(after), source.count(), sys.stderr)
    summary = copy_records(records, target, after=after, progress=progress)
    if checkpoint is not None and summary.last_key is not None:
        checkpoint.write_text(summary.last_key, encoding="ascii")
    print(f"{summary} ({_without_password(args.source)} -> {_without_password(args.target)})")
    return 0


def _without_password(url: str) -> str:
    from wsgi_session.config.store_urls import without_password

    return without_password(url)


@dataclass
class Census:
    """What a scan of the store's records found."""

    live: int = 0
    permanent: int = 0
    owned: int = 0
    expired: int = 0  # past their timeouts, not yet dropped by the store
    retired: int = 0  # forwards left by regenerations, and emptied sessions
    unreadable: int = 0

    def count(self, raw: bytes, lifetime: Lifetime, now: float) -> None:
        record = Record.header(raw)
        if record is None:
            self.unreadable += 1
        elif record.retired or record.text == EMPTY:
            self.retired += 1
        elif lifetime.remaining(record.created, record.accessed, record.idle_timeout, now) <= 0:
            self.expired += 1
        else:
            self.live += 1
            self.permanent += record.permanent
            self.owned += record.owner is not None


def stats(args: argparse.Namespace) -> int:
    """Count the live sessions in the configured store; show the store's own size figures."""
    config = Config.load((os.environ, args.prefix), require_secret=False)
    store = config.store
    missing = _missing_database(store)
    if missing is not None:
        print(f"wsgi-session stats: no session database at {missing}", file=sys.stderr)
        return 1
    if not isinstance(store, RecordScan):
        print(f"{config.shown_store_url}: {type(store).__name__} cannot list its records")
        return 0
    arguments = config.arguments
    lifetime = Lifetime(
        idle_timeout=arguments.get("idle_timeout", 14 * DAY),
        absolute_timeout=arguments.get("absolute_timeout"),
    )
    census = Census()
    now = time.time()
    show = sys.stderr.isatty() if args.progress is None else args.progress
    records = store.records()
    for raw in _progress(records, store.record_count(), sys.stderr) if show else records:
        census.count(raw, lifetime, now)
    print(f"sessions in {config.shown_store_url}:")
    rows = [
        ("live", census.live),
        ("permanent", census.permanent),
        ("with an owner", census.owned),
        ("expired, not yet dropped", census.expired),
        ("retired (forwards, emptied)", census.retired),
        ("unreadable", census.unreadable),
    ]
    rows += sorted(store.figures().items())
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value:,}")
    return 0


PROGRESS_WIDTH = 30
PROGRESS_EVERY = 0.1  # seconds between two redraws


def _progress(items: Iterable[T], total: int | None, out: TextIO) -> Iterator[T]:
    """``items``, drawing a bar (a count, when ``total`` is unknown) on ``out`` meanwhile."""
    drawn = 0.0
    done = 0

    def draw() -> None:
        if total:
            filled = min(PROGRESS_WIDTH, PROGRESS_WIDTH * done // total)
            bar = "#" * filled + "-" * (PROGRESS_WIDTH - filled)
            out.write(f"\rscanning [{bar}] {done:,}/{total:,}")
        else:
            out.write(f"\rscanning {done:,} records")
        out.flush()

    for item in items:
        yield item
        done += 1
        if time.monotonic() - drawn >= PROGRESS_EVERY:
            draw()
            drawn = time.monotonic()
    draw()
    out.write("\n")


def sessions(args: argparse.Namespace) -> int:
    """List an owner's live sessions."""
    found = _sessions(args).of(args.owner)
    for info in found:
        client = " ".join(part for part in (info.address, info.user_agent) if part)
        print(
            f"{info.handle}  created {info.created:%Y-%m-%d %H:%M:%S}Z  "
            f"last seen {info.last_seen:%Y-%m-%d %H:%M:%S}Z  "
            f"expires {info.expires:%Y-%m-%d %H:%M:%S}Z" + (f"  {client}" if client else "")
        )
    plural = "" if len(found) == 1 else "s"
    print(f"{len(found)} live session{plural} of {args.owner!r}")
    return 0


def revoke(args: argparse.Namespace) -> int:
    """End every session of an owner."""
    count = _sessions(args).revoke(args.owner)
    plural = "" if count == 1 else "s"
    print(f"revoked {count} session{plural} of {args.owner!r}")
    return 0


def _sessions(args: argparse.Namespace) -> Sessions:
    config = Config.load((os.environ, args.prefix))
    # The stored owner hashes do not depend on which key of the data named the
    # owner, so an application configured in code (Flask, Django) is reached
    # without setting OWNER_KEY for this command too.
    return config.middleware(_unused_app, owner_key=CLI_OWNER_KEY).sessions


def _unused_app(environ: object, start_response: object) -> list[bytes]:
    raise AssertionError("the sessions commands only read and delete records")


def _missing_database(store: object) -> Path | None:
    """The path of an SQLite store whose file does not exist yet, else ``None``."""
    from wsgi_session.stores.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore) and not store.path.exists():
        return store.path
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsgi-session",
        description="Sessions for any WSGI application: demo and maintenance commands.",
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def add(name: str, command: Command, summary: str, description: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=summary,
            description=description,
            epilog=SETTINGS_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(command=command, name=name)
        sub.add_argument(
            "--prefix",
            default=ENV_PREFIX,
            help=f"prefix of the environment variables to read (default: {ENV_PREFIX})",
        )
        return sub

    served = add(
        "demo",
        demo,
        "serve the demo application",
        "Serve a demo: a visit counter, a login that gives the session a new id and a\n"
        "logout that deletes it, with the id, store key and expiry on every page.\n"
        "Uses the settings from the environment; without a secret key a random one.",
    )
    served.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    served.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    add(
        "gc",
        gc,
        "delete expired sessions from the configured store",
        "Delete expired session records from the configured store and report how many.\n"
        "Run it from cron for the SQLite store; memcached, Redis and cookie sessions\n"
        "expire by themselves. Needs no secret key.",
    )
    add(
        "check",
        check,
        "validate the settings and reach the store",
        "Validate the settings, load a random key from the store to prove it answers,\n"
        "and print the effective configuration with secrets masked. Exits non-zero,\n"
        "with the reason, when a setting is wrong or the store cannot be reached.",
    )
    counted = add(
        "stats",
        stats,
        "count the live sessions in the configured store",
        "Count the live sessions in the configured store, how many are permanent and\n"
        "how many have an owner, by reading every record's header (never the data,\n"
        "and no session id: none is needed), and show the store's own size figures\n"
        "(SQLite's file size, Redis' memory, memcached's items). A progress bar goes\n"
        "to standard error while it scans. Needs no secret key.",
    )
    counted.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw the progress bar (default: when standard error is a terminal)",
    )
    copying = add(
        "migrate",
        migrate,
        "copy every live session from one store to another",
        "Copy every live session of one store of ours into another, each with the time\n"
        "it has left, while the application serves: a session the target already holds\n"
        "as new or newer is left as it is. Idempotent; --checkpoint FILE resumes a\n"
        "stopped copy after the last key it wrote there. Needs no secret key.",
    )
    copying.add_argument("--from", dest="source", required=True, metavar="URL", help="a store URL")
    copying.add_argument("--to", dest="target", required=True, metavar="URL", help="a store URL")
    copying.add_argument("--checkpoint", metavar="FILE", help="where to note progress, to resume")
    for name, command, summary in (
        ("sessions", sessions, "list a user's live sessions"),
        ("revoke", revoke, "end every session of a user (sign out everywhere)"),
    ):
        owned = add(
            name,
            command,
            summary,
            f"{summary[0].upper()}{summary[1:]}: OWNER is the value the application's\n"
            "owner key holds (Flask-Login's _user_id, Django's _auth_user_id, OWNER_KEY).\n"
            "Needs the application's SECRET_KEY and STORE (a server-side store).",
        )
        owned.add_argument("owner", metavar="OWNER", help="the user's id, as the session keeps it")
    return parser

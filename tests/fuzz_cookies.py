"""``make fuzz``: hostile Cookie headers against every store behind every adapter.

Each header is sent as a raw WSGI request to each store (memory, sqlite,
memcached, redis, cookie) behind each adapter (plain WSGI, Flask, Django) in turn.
Most headers are near misses of cookies the server issued (re-spelled,
padded, junk inserted, truncated, quoted, one character changed); the rest are
junk of every shape, and a few are the issued cookies themselves, to show the
checks can see a session being served. One more subject migrates
(``migrate_from="flask"``): its headers are near misses of real Flask cookie
sessions too, and each old cookie as issued may be adopted once, under one
new id, never again under another. Counted, and required to be 0:

- exceptions out of the application, and answers other than 2xx;
- store lookups for anything but an issued cookie the header carries as is
  (the store is wrapped in a counter);
- sessions served (not new) whose cookie the header does not carry as is.

Usage: ``python tests/fuzz_cookies.py [--headers N] [--seed S]``; exits 1 on
any failure, printing the first examples.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from database_servers import PostgresServer
from hostile import STORES, Subject, migrating_subject, store_key, subjects
from memcached_server import MemcachedServer
from redis_server import RedisServer

from wsgi_session.backends.adoption import mark_key

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
JUNK = [
    "!!",
    "\x00",
    "~*",
    "\xe9",
    "\xff",
    " ",
    "\t",
    "=",
    "==",
    ".",
    '"',
    "\\",
    ";",
    ",",
    "+",
    "/",
]
ISSUED_PER_SUBJECT = 8
WRITE_SHARE = 0.02  # requests that also write the session
CONTROL_SHARE = 0.03  # requests that send an issued cookie unchanged


def respell_last(value: str, rng: random.Random) -> str:
    """The last character with one of the bits base64 leaves unused set."""
    index = ALPHABET.find(value[-1:] or "?")
    if index < 0:
        return value + "A"
    return value[:-1] + ALPHABET[index ^ rng.choice((1, 2, 3))]


def mutate(value: str, rng: random.Random) -> str:
    """``value`` changed in one of the ways a client could change it."""
    position = rng.randrange(len(value) + 1)
    kind = rng.randrange(15)
    if kind == 0:
        return respell_last(value, rng)
    if kind == 1:
        return value + rng.choice(("=", "==", "==="))
    if kind == 2:
        return value[:position] + rng.choice(JUNK) + value[position:]
    if kind == 3:
        return value.replace("-", "+").replace("_", "/")
    if kind == 4:
        return value[:position] + value[position + 1 :]
    if kind == 5:
        return value[:position] + rng.choice(ALPHABET) + value[position + 1 :]
    if kind == 6:
        return value[:position]
    if kind == 7:
        return value.swapcase()
    if kind == 8:
        return f'"{value}"'
    if kind == 9:
        return '"' + value.replace(".", "\\056") + '"'
    if kind == 10:
        return value + value
    if kind == 11:
        head, _, sig = value.rpartition(".")
        return f"{sig}.{head}"
    if kind == 12:
        return value[:position] + chr(rng.randrange(128, 256)) + value[position:]
    if kind == 13:
        # The browser-session mark (backends/server.py) dropped or added: it is signed.
        head, _, sig = value.rpartition(".")
        return f"{head[:-2]}.{sig}" if head.endswith(".b") else f"{head}.b.{sig}"
    return value[:position] + value[position:].upper()


def junk_text(rng: random.Random, length: int) -> str:
    pool = rng.choice(
        (
            ALPHABET + ".",
            ALPHABET + ".=; ",
            "".join(map(chr, range(256))),
            "".join(map(chr, range(32, 127))),
        )
    )
    return "".join(rng.choice(pool) for _ in range(length))


def hostile_header(subject: Subject, issued: list[str], rng: random.Random) -> str:
    name = subject.cookie_name
    roll = rng.random()
    if roll < CONTROL_SHARE:
        value = rng.choice(issued)
    elif roll < 0.75:
        value = rng.choice(issued)
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            value = mutate(value, rng)
    elif roll < 0.85:
        return junk_text(rng, rng.choice((0, 1, 5, 40, 100, 300)))
    else:
        shape = rng.randrange(8)
        if shape == 0:
            return "; ".join(f"c{n}={n}" for n in range(rng.randrange(50, 500)))
        if shape == 1:
            value = junk_text(rng, rng.choice((4000, 8000)))
        elif shape == 2:
            name = rng.choice((name.upper(), name + " ", " " + name, name + "\x00", name[:-1]))
            value = rng.choice(issued)
        elif shape == 3:
            return rng.choice((name, f"{name}=", f"={rng.choice(issued)}", ";;;", "", " ", "="))
        elif shape == 4:
            value = junk_text(rng, 43) + "." + junk_text(rng, 43)
        elif shape == 5:
            value = f"{rng.choice(issued)}; {name}={mutate(rng.choice(issued), rng)}"
        elif shape == 6:
            value = rng.choice(issued).split(".")[0]
        else:
            value = mutate(rng.choice(issued), rng) + "; " + f"{name}={rng.choice(issued)}"
    header = f"{name}={value}"
    if rng.random() < 0.2:
        header = f"theme=dark; {header}; lang={junk_text(rng, 5)}"
    return header


class Tally:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: list[str] = []

    def bad(self, what: str, subject: Subject, header: str, detail: str = "") -> None:
        self.counts[what] += 1
        if len(self.examples) < 10:
            self.examples.append(f"{what} [{subject.name}] {header[:200]!r} {detail}")


def fuzz(subject: Subject, count: int, rng: random.Random, tally: Tally) -> None:
    issued = [subject.issue() for _ in range(ISSUED_PER_SUBJECT)]
    if subject.issue_old is not None:  # old cookies too, near misses of them, and new ones
        issued += [subject.new_old_cookie() for _ in range(ISSUED_PER_SUBJECT)]
    if subject.counter is not None:
        subject.counter.take()
    for _ in range(count):
        # As a WSGI server hands a header over: latin-1 text (PEP 3333).
        header = hostile_header(subject, issued, rng).encode("latin-1", "replace").decode("latin-1")
        path = "/write" if rng.random() < WRITE_SHARE else "/read"
        carried = subject.header_names_issued(header)
        old_carried = subject.header_old_cookies(header)
        tally.counts["headers"] += 1
        try:
            answer = subject.call(header, path)
        except Exception:
            tally.bad("exceptions", subject, header, traceback.format_exc(limit=3))
            continue
        if not answer.status.startswith("2"):
            tally.bad("non-2xx", subject, header, answer.status)
            continue
        if subject.counter is not None:
            allowed = {store_key(session_id) for session_id in carried}
            # An old cookie as issued: its mark, and the session it was adopted as.
            allowed |= {mark_key(cookie) for cookie in old_carried}
            allowed |= {
                store_key(adopted) for adopted in subject.old_issued.values() if adopted is not None
            }
            if old_carried and not answer.new:
                allowed.add(store_key(answer.id))
            for key, times in subject.counter.take().items():
                if key in allowed:
                    tally.counts["lookups of issued cookies"] += times
                else:
                    tally.bad("lookups for cookies not issued", subject, header, key)
        if not answer.new:
            if answer.id in carried:
                tally.counts["issued sessions served"] += 1
            elif old_carried and adopted_once(subject, old_carried, answer.id):
                tally.counts["old sessions adopted or followed"] += 1
            else:
                tally.bad("adopted ids", subject, header, answer.id)


def adopted_once(subject: Subject, old_carried: set[str], session_id: str) -> bool:
    """Whether ``session_id`` is the one adoption of an old cookie the header carried."""
    for cookie in old_carried:
        adopted = subject.old_issued[cookie]
        if adopted == session_id:
            return True  # followed within the grace window
        if adopted is None and session_id not in subject.old_issued.values():
            subject.old_issued[cookie] = session_id  # its first and only adoption
            return True
    return False


FAILURES = ("exceptions", "non-2xx", "lookups for cookies not issued", "adopted ids")


@contextmanager
def redis_started(files: Path) -> Iterator[RedisServer]:
    directory = files / "redis"
    directory.mkdir()
    server = RedisServer(directory).start()
    try:
        yield server
    finally:
        server.kill()


@contextmanager
def postgres_started() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.remove()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--headers", type=int, default=100_000, help="in all (default 100000)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a new one)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    tally = Tally()
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="fuzz-") as files,
        MemcachedServer() as memcached,
        redis_started(Path(files)) as redis,
        postgres_started() as postgres,
        subjects(Path(files), memcached, redis, postgres) as made,
    ):
        made = [*made, migrating_subject(Path(files))]
        per_subject = -(-args.headers // len(made))
        for subject in made:
            fuzz(subject, per_subject, rng, tally)
    elapsed = time.monotonic() - started
    counts = tally.counts
    print(
        f"fuzz: {counts['headers']} hostile Cookie headers, {len(made)} subjects "
        f"({', '.join(STORES)} x wsgi, flask, django; memory<-flask migrating), seed {seed}, "
        f"{elapsed:.1f} s: "
        + ", ".join(f"{counts[name]} {name}" for name in FAILURES)
        + f" (controls: {counts['issued sessions served']} issued sessions served, "
        f"{counts['lookups of issued cookies']} lookups of issued cookies, "
        f"{counts['old sessions adopted or followed']} old sessions adopted or followed)"
    )
    for example in tally.examples:
        print("  " + example)
    failed = any(counts[name] for name in FAILURES) or not counts["issued sessions served"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

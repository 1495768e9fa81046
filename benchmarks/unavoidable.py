"""What a session request cannot skip, timed piece by piece, and the floor app built of only that.

Not a product: nothing here is used by wsgi_session. It answers two questions
with numbers from the same run as the rows:

* **the pieces**: each step a session read or write must do under the
  project's rules (werkzeug's Set-Cookie, HMAC-SHA256 through ``hmac``, a
  hashed store key, tagged JSON, a record with a format version), timed alone
  through wsgi_session's own function for it, and the raw library call next
  to it where the point is what the wrapper adds; the HMAC in its fastest
  form the rules allow, a keyed ``hmac.new`` made once and ``.copy()``'d per
  message, with ``hmac.digest`` (which keys OpenSSL anew on every call) beside it;
* **the floor app**: the benchmark's handlers on a session hand-inlined into
  one function (no classes, no hooks, no configuration) that does those steps
  and nothing else, with the same security properties: a signed 256-bit id,
  verified in constant time against the canonical spelling of its HMAC, a
  SHA-256 store key, compare-and-set on a version. Like wsgi_session, a
  write under the same id re-sends the request's own verified cookie, and
  only a new visitor's id is signed. It is how close to the
  floor plain Python gets; the distance from wsgi_session's row to it is what
  the library's flow costs.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import itertools
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from werkzeug.http import dump_cookie

from benchmarks.apps import SECRET, WSGIApp, environ, session_app
from wsgi_session.backends.slots import store_key
from wsgi_session.cookies import CookiePolicy, KeyRing, decode_canonical, encode_canonical
from wsgi_session.record import Record
from wsgi_session.serialization import dumps, loads
from wsgi_session.stores.memory import MemoryStore

COOKIE = "session"
# wsgi_session's purpose for signing ids: the floor app's cookies verify with the
# library's signer and the library's with the floor's (tests/test_benchmark_floor.py).
ID_PURPOSE = "wsgi_session.id"
COOKIE_STORE_PURPOSE = "wsgi_session.cookie"  # the cookie store's signed payloads
IDLE_TIMEOUT = 14 * 24 * 3600  # wsgi_session's default idle timeout
LOADED = "benchmarks.floor"  # the floor app's per-request state in the environ
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")

# The cells the pieces add up to: (store, scenario) of the rows they are the floor of.
FLOOR_STORES = ("memory", "cookie")
CELLS = tuple((store, scenario) for store in FLOOR_STORES for scenario in ("read", "write", "new"))


@dataclass(frozen=True)
class Piece:
    """One step a session cannot skip: ``call()`` does it once on the benchmark's session.

    ``cells``: the (store, scenario) cells whose floor includes it; empty for a
    raw form shown next to the wrapper that contains it.
    """

    name: str
    timed: str
    call: Callable[[], object]
    cells: frozenset[tuple[str, str]] = frozenset()

    def part_of(self) -> str:
        """The cells it is part of, in short: ``memory r w n · cookie r``."""
        letters: dict[str, list[str]] = {}
        for store, scenario in CELLS:
            if (store, scenario) in self.cells:
                letters.setdefault(store, []).append(scenario[0])
        return " · ".join(f"{store} {' '.join(found)}" for store, found in letters.items())


_SCENARIO_LETTERS = {"r": "read", "w": "write", "n": "new"}


def _in(*spec: str) -> frozenset[tuple[str, str]]:
    """``_in("memory rwn", "cookie r")``: the memory read, write and new cells, the cookie read."""
    cells: set[tuple[str, str]] = set()
    for item in spec:
        store, letters = item.split()
        cells.update((store, _SCENARIO_LETTERS[letter]) for letter in letters)
    return frozenset(cells)


def pieces(data: dict[str, Any]) -> list[Piece]:
    """The pieces, each bound to inputs like the benchmark's: its session, id, record, cookie."""
    keys = KeyRing(SECRET)
    id_signer = keys.signer(ID_PURPOSE)
    id_key = keys.derive(ID_PURPOSE)[-1]
    id_mac = hmac.new(id_key, digestmod="sha256")
    payload_signer = keys.signer(COOKIE_STORE_PURPOSE)
    policy = CookiePolicy(name=COOKIE)

    session_id = secrets.token_urlsafe(32)
    signed_id = id_signer.sign(session_id)
    request = environ("/read", f"{COOKIE}={signed_id}")
    key = store_key(session_id)
    now = int(time.time())
    text = dumps(data)
    record = Record(now, now, False, None, text)
    raw_record = record.encode()
    records: dict[str, tuple[bytes, int]] = {key: (raw_record, 1)}
    version = [1]
    memory = MemoryStore()
    memory.save(key, raw_record, IDLE_TIMEOUT)
    body = b"j" + record.encode_with_id(session_id)
    payload_text = "S" + encode_canonical(body)
    signed_payload = payload_signer.sign(payload_text)
    message = session_id.encode("ascii")

    def keyed_hmac() -> bytes:
        mac = id_mac.copy()
        mac.update(message)
        return mac.digest()

    def compare_and_set() -> None:
        found = records.get(key)
        if found is None or found[1] != version[0]:
            raise RuntimeError("the compare-and-set piece lost its record")
        version[0] += 1
        records[key] = (raw_record, version[0])

    def werkzeug_cookie(max_age: int | None) -> Callable[[], str]:
        return lambda: dump_cookie(
            COOKIE, signed_id, max_age=max_age, path="/", httponly=True, samesite="Lax"
        )

    return [
        # -- a read --------------------------------------------------------
        Piece(
            "the cookie's value, out of the Cookie header",
            "CookiePolicy.read",
            lambda: policy.read(request),
            _in("memory rw", "cookie rw"),
        ),
        Piece(
            "the clock (timeouts, the record's timestamps)",
            "time.time",
            time.time,
            _in("memory rwn", "cookie rwn"),
        ),
        Piece(
            "the signed id verified (HMAC-SHA256, canonical base64, compare_digest)",
            "CookieSigner.unsign",
            lambda: id_signer.unsign(signed_id),
            _in("memory rw"),
        ),
        Piece(
            "… of which the HMAC alone",
            "keyed hmac.new: copy, update, digest",
            keyed_hmac,
        ),
        Piece(
            "… the HMAC keyed anew on each call",
            "hmac.digest",
            lambda: hmac.digest(id_key, message, "sha256"),
        ),
        Piece(
            "the store key: SHA-256 of the id",
            "slots.store_key",
            lambda: store_key(session_id),
            _in("memory rwn"),
        ),
        Piece(
            "the memory store's lookup",
            "dict.get",
            lambda: records.get(key),
            _in("memory rw"),
        ),
        Piece(
            "… as MemoryStore does it (lock, expiry)",
            "MemoryStore.load",
            lambda: memory.load(key),
        ),
        Piece(
            "the record's header parsed",
            "Record.decode",
            lambda: Record.decode(raw_record),
            _in("memory rw"),
        ),
        Piece(
            "the tagged JSON decoded",
            "serialization.loads",
            lambda: loads(text),
            _in("memory rw", "cookie rw"),
        ),
        Piece(
            "the app's read", "dict.get", lambda: data.get("user_id"), _in("memory r", "cookie r")
        ),
        # -- a write ---------------------------------------------------------
        Piece(
            "the tagged JSON encoded",
            "serialization.dumps",
            lambda: dumps(data),
            _in("memory wn", "cookie wn"),
        ),
        Piece("the record encoded", "Record.encode", record.encode, _in("memory wn")),
        Piece(
            "compare-and-set on a dict version",
            "dict get, compare, set",
            compare_and_set,
            _in("memory wn"),
        ),
        Piece(
            "a new id (256 random bits)",
            "secrets.token_urlsafe(32)",
            lambda: secrets.token_urlsafe(32),
            _in("memory n", "cookie n"),
        ),
        # A write under the same id re-sends the request's verified cookie: only
        # a new visitor's id is signed.
        Piece(
            "the id signed",
            "CookieSigner.sign",
            lambda: id_signer.sign(session_id),
            _in("memory n"),
        ),
        Piece(
            "… the same signature, raw",
            "keyed hmac.new copy + base64",
            lambda: signature(id_mac, session_id),
        ),
        Piece(
            "Set-Cookie, attributes spelled once",
            "CookiePolicy.dump",
            lambda: policy.dump(request, signed_id, None),
            _in("memory wn", "cookie wn"),
        ),
        Piece("… by werkzeug on every response", "dump_cookie", werkzeug_cookie(None)),
        Piece(
            "… with a Max-Age (permanent sessions)",
            "dump_cookie(max_age=…)",
            werkzeug_cookie(IDLE_TIMEOUT),
        ),
        # -- the cookie store: the session in the cookie, signed ---------------
        Piece(
            "the cookie store's payload verified (HMAC of ~220 bytes)",
            "CookieSigner.unsign",
            lambda: payload_signer.unsign(signed_payload),
            _in("cookie rw"),
        ),
        Piece(
            "the payload's base64 decoded (canonical)",
            "cookies.decode_canonical",
            lambda: decode_canonical(payload_text[1:]),
            _in("cookie rw"),
        ),
        Piece(
            "the payload parsed",
            "Record.decode_with_id",
            lambda: Record.decode_with_id(body[1:]),
            _in("cookie rw"),
        ),
        Piece(
            "the payload encoded",
            "Record.encode_with_id",
            lambda: record.encode_with_id(session_id),
            _in("cookie wn"),
        ),
        Piece(
            "the payload's base64",
            "cookies.encode_canonical",
            lambda: encode_canonical(body),
            _in("cookie wn"),
        ),
        Piece(
            "the payload signed",
            "CookieSigner.sign",
            lambda: payload_signer.sign(payload_text),
            _in("cookie wn"),
        ),
    ]


def signature(keyed: hmac.HMAC, session_id: str) -> str:
    """The HMAC-SHA256 of ``session_id`` as itsdangerous spells it (unpadded URL-safe base64).

    ``keyed`` is ``hmac.new(key, digestmod="sha256")``, made once: a copy of it
    per message skips keying OpenSSL anew, as wsgi_session's ``CookieSigner`` does.
    """
    mac = keyed.copy()
    mac.update(session_id.encode("ascii"))
    return (
        binascii.b2a_base64(mac.digest(), newline=False)
        .translate(_TO_URLSAFE)
        .rstrip(b"=")
        .decode()
    )


def nothing() -> None:
    """The empty piece: what calling a piece costs, taken off every piece's time."""


def sums(measured: dict[str, float], found: Iterable[Piece]) -> dict[tuple[str, str], float]:
    """Per cell, the sum of its pieces' ``measured`` times (pieces missing: cell left out)."""
    totals: dict[tuple[str, str], float] = {}
    found = list(found)
    for cell in CELLS:
        parts = [measured.get(piece.name) for piece in found if cell in piece.cells]
        if parts and all(part is not None for part in parts):
            totals[cell] = sum(part for part in parts if part is not None)
    return totals


def floor_app(data: dict[str, Any]) -> WSGIApp:
    """The benchmark's handlers on a session that does only the unavoidable steps.

    Hand-inlined on purpose, so no frame, attribute lookup or option stands
    between the steps: the cookie read as wsgi_session reads it (raw, first
    one wins), the id verified and signed as its ``CookieSigner`` does (a
    copy of one keyed HMAC per message), the record in its format 1, the
    Set-Cookie attributes spelled once by werkzeug (as ``CookiePolicy.dump``
    caches them); a write under the same id re-sends the request's verified
    cookie as it came, as wsgi_session does, so only a new visitor is
    signed. Only what the handlers need: no deletion, regeneration, merge on
    conflict (it raises), permanent sessions or expiring stale cookies.
    Change detection is a shallow copy compared at the end, enough for the
    flat benchmark session.
    """
    id_mac = hmac.new(KeyRing(SECRET).derive(ID_PURPOSE)[-1], digestmod="sha256")
    attributes = dump_cookie(COOKIE, "", path="/", httponly=True, samesite="Lax")[len(COOKIE) + 1 :]
    records: dict[str, tuple[bytes, int]] = {}
    versions = itertools.count(1)

    def open_session(environ: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        found = None
        header = environ.get("HTTP_COOKIE")
        if header and COOKIE in header:
            for pair in header.split(";"):
                name, sep, value = pair.strip(" \t").partition("=")
                if not sep or (name != COOKIE and name.rstrip(" \t") != COOKIE):
                    continue
                value = value.lstrip(" \t")  # the header's optional whitespace, as the library
                session_id, dot, signed = value.rpartition(".")
                # Compared as text with the canonical spelling: no other spelling verifies.
                if (
                    dot
                    and value.isascii()
                    and hmac.compare_digest(signature(id_mac, session_id), signed)
                ):
                    key = hashlib.sha256(session_id.encode("ascii")).hexdigest()
                    stored = records.get(key)
                    if stored is not None:
                        fmt, created, accessed, _permanent, _idle, text = stored[0].split(b" ", 5)
                        if fmt == b"1" and int(accessed) + IDLE_TIMEOUT > time.time():
                            data = loads(text)
                            found = (value, key, stored[1], int(created))
                break
        environ[LOADED] = (found, data, dict(data))
        return data

    handlers = session_app(open_session, data)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            loaded = environ.get(LOADED)
            if loaded is not None:
                headers.append(("Vary", "Cookie"))
                found, data, before = loaded
                if data != before:
                    now = int(time.time())
                    if found is None:
                        session_id = secrets.token_urlsafe(32)
                        key = hashlib.sha256(session_id.encode("ascii")).hexdigest()
                        if key in records:
                            raise RuntimeError("a new 256-bit id collided")
                        created = now
                        cookie = f"{session_id}.{signature(id_mac, session_id)}"
                    else:
                        # The id is unchanged: its cookie, verified above, is re-sent.
                        cookie, key, version, created = found
                        stored = records.get(key)
                        if stored is None or stored[1] != version:
                            raise RuntimeError("conflict: the floor app does not merge")
                    record = b"1 %d %d 0 0 " % (created, now) + dumps(data).encode("utf-8")
                    records[key] = (record, next(versions))
                    headers.append(("Set-Cookie", f"{COOKIE}={cookie}{attributes}"))
            return start_response(status, headers, exc_info)

        return handlers(environ, start)

    return app

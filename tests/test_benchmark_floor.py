"""The benchmark's floor app and unavoidable pieces (benchmarks/unavoidable.py) stay honest.

The floor app is the "how close to the floor can Python get" line of the
benchmark: it must keep wsgi_session's security properties, or its numbers
would flatter the floor. These tests hold its hand-inlined steps to the
library's answers: its cookies verify with wsgi_session's signer and the
library's with its, and a tampered or respelled cookie opens nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the benchmarks package

from benchmarks.apps import SECRET, USER_ID, WSGIApp, environ, payload
from benchmarks.timing import Capture, request, seed
from benchmarks.unavoidable import CELLS, ID_PURPOSE, floor_app, pieces, sums
from wsgi_session.cookies import KeyRing, encode_canonical

DATA = payload(100)


@pytest.fixture
def app() -> WSGIApp:
    return floor_app(DATA)


def cookie_of(capture: Capture) -> str:
    return capture.cookie().split("=", 1)[1]


def test_the_floor_app_answers_every_scenario_as_the_rows_do(app: WSGIApp) -> None:
    cookie = seed(app, "floor")
    untouched = request(app, environ("/untouched", cookie))
    assert untouched.status == "200 OK" and ("Vary", "Cookie") not in untouched.headers

    read = request(app, environ("/read", cookie))
    assert read.status == "200 OK"
    assert ("Vary", "Cookie") in read.headers and not read.cookie()

    write = request(app, environ("/write", cookie))
    assert write.status == "200 OK"
    assert write.cookie() == cookie  # the same id, re-sent as wsgi_session does on a write
    assert request(app, environ("/read", cookie)).status == "200 OK"  # the data survived

    new = request(app, environ("/new"))
    assert new.status == "200 OK" and new.cookie() and new.cookie() != cookie
    assert "HttpOnly" in dict(new.headers)["Set-Cookie"]


def test_its_cookies_are_signed_as_wsgi_session_signs_ids(app: WSGIApp) -> None:
    signer = KeyRing(SECRET).signer(ID_PURPOSE)
    signed = cookie_of(request(app, environ("/new")))
    verified = signer.unsign(signed)
    assert verified is not None
    session_id = verified[0]
    assert len(session_id) == 43  # 256 bits, unpadded URL-safe base64
    assert signer.sign(session_id) == signed


@pytest.mark.parametrize(
    "respell",
    [
        lambda signed: signed[:-1] + ("A" if signed[-1] != "A" else "B"),  # another signature
        lambda signed: signed[:-1] + chr(ord(signed[-1]) ^ 1),  # the unused low bits
        lambda signed: signed + "=",  # padding
        lambda signed: signed.replace("-", "+").replace("_", "/"),  # the other alphabet
        lambda signed: signed.split(".")[0],  # no signature
        lambda signed: "x" + signed,  # another id
    ],
)
def test_a_cookie_that_is_not_the_one_issued_opens_nothing(
    app: WSGIApp, respell: Callable[[str], str]
) -> None:
    # Only a cookie with a "-" or "_" has another alphabet's spelling (about 1 in
    # 15 has neither): seed until the respelling changes it, a bounded number of times.
    for _ in range(100):
        signed = cookie_of(request(app, environ("/seed")))
        forged = respell(signed)
        if forged != signed:
            break
    assert forged != signed
    read = request(app, environ("/read", f"session={forged}"))
    assert read.status == "404 Not Found"
    assert not read.cookie()


def test_it_reads_the_cookie_headers_optional_whitespace_as_the_library_does(
    app: WSGIApp,
) -> None:
    signed = cookie_of(request(app, environ("/seed")))
    assert request(app, environ("/read", f"theme=dark; session \t= {signed}\t")).status == "200 OK"


def test_an_id_signed_by_the_library_but_never_stored_opens_nothing(app: WSGIApp) -> None:
    signed = KeyRing(SECRET).signer(ID_PURPOSE).sign("A" * 43)
    assert request(app, environ("/read", f"session={signed}")).status == "404 Not Found"


def test_the_raw_pieces_answer_what_the_library_answers() -> None:
    found = {piece.name: piece.call for piece in pieces(DATA)}
    signed = found["the id signed"]()
    assert isinstance(signed, str)
    assert found["… the same signature, raw"]() == signed.rsplit(".", 1)[1]
    # The keyed copy and hmac.digest are the same HMAC, the one in the signature.
    keyed = found["… of which the HMAC alone"]()
    assert keyed == found["… the HMAC keyed anew on each call"]()
    assert isinstance(keyed, bytes) and encode_canonical(keyed) == signed.rsplit(".", 1)[1]
    assert found["the app's read"]() == USER_ID
    assert found["the signed id verified (HMAC-SHA256, canonical base64, compare_digest)"]()
    assert found["the memory store's lookup"]() is not None
    assert found["… as MemoryStore does it (lock, expiry)"]() is not None
    record = found["the record's header parsed"]()
    assert record is not None and record.text == found["the tagged JSON encoded"]()
    assert found["the payload parsed"]() is not None
    assert found["the cookie store's payload verified (HMAC of ~220 bytes)"]() is not None
    for _ in range(3):  # compare-and-set keeps finding the version it left
        found["compare-and-set on a dict version"]()


def test_every_cell_has_a_floor_and_the_raw_forms_are_not_counted_twice() -> None:
    found = pieces(DATA)
    totals = sums({piece.name: 1.0 for piece in found}, found)
    assert set(totals) == set(CELLS)
    for piece in found:
        assert bool(piece.cells) != piece.name.startswith("…")

"""Property tests (hypothesis) for everything a client controls.

Cookie headers, signed values, records read back from a store someone edited,
and serialized values: whatever they hold, a request gets an answer (never an
exception), a lookup happens only for a cookie the server issued, and what
was written reads back unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import SECRET, store_key
from hostile import LoadCounter, Subject, migrating_subject, wsgi_subject
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import Signer
from itsdangerous.encoding import base64_encode

from wsgi_session import MemoryStore
from wsgi_session.backends.cookie import CookieBackend, CookieStore
from wsgi_session.cookies import KeyRing, decode_canonical, encode_canonical
from wsgi_session.lifetime import Lifetime
from wsgi_session.owner import Owner
from wsgi_session.record import Record
from wsgi_session.serialization import dumps, loads

PROPERTY = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
LATIN_1 = st.characters(min_codepoint=0, max_codepoint=255)
B64 = string.ascii_letters + string.digits + "-_"
SIGNER = KeyRing(SECRET, [SECRET[::-1]]).signer("wsgi_session.id")


@pytest.fixture(scope="module")
def server_side() -> Iterator[Subject]:
    """A plain-WSGI subject on a memory store, with issued cookies."""
    counter = LoadCounter(MemoryStore())
    subject = Subject("memory", "wsgi", wsgi_subject(counter), "session", counter)
    for _ in range(3):
        subject.issue()
    yield subject


@pytest.fixture(scope="module")
def cookie_side() -> Iterator[Subject]:
    subject = Subject("cookie", "wsgi", wsgi_subject(CookieStore()), "session", None)
    for _ in range(3):
        subject.issue()
    yield subject


def near_misses(subject: Subject) -> st.SearchStrategy[str]:
    """Issued cookies with text inserted, deleted or replaced somewhere."""
    issued = st.sampled_from(sorted(subject.issued))
    edit = st.tuples(issued, st.integers(0, 200), st.integers(0, 3), st.text(LATIN_1, max_size=4))
    return edit.map(lambda e: e[0][: e[1]] + e[3] + e[0][e[1] + e[2] :])


def cookie_headers(subject: Subject) -> st.SearchStrategy[str]:
    value = st.one_of(st.text(LATIN_1, max_size=300), near_misses(subject))
    return st.one_of(
        st.text(LATIN_1, max_size=300),
        value.map(lambda v: f"session={v}"),
        st.tuples(st.text(LATIN_1, max_size=20), value).map(lambda t: f"{t[0]}; session={t[1]}"),
    )


def check_header(subject: Subject, header: str) -> None:
    carried = subject.header_names_issued(header)
    answer = subject.call(header)
    assert answer.status == "200 OK", (header, answer)
    if subject.counter is not None:
        looked_up = set(subject.counter.take())
        assert looked_up <= {store_key(session_id) for session_id in carried}, header
    assert answer.new or answer.id in carried, header


@PROPERTY
@given(data=st.data())
def test_any_cookie_header_is_answered_and_only_an_issued_cookie_is_looked_up(
    server_side: Subject, data: st.DataObject
) -> None:
    check_header(server_side, data.draw(cookie_headers(server_side)))


@PROPERTY
@given(data=st.data())
def test_any_cookie_header_is_answered_by_the_cookie_store_and_never_adopted(
    cookie_side: Subject, data: st.DataObject
) -> None:
    check_header(cookie_side, data.draw(cookie_headers(cookie_side)))


OWS = st.text(st.sampled_from(" \t"), max_size=3)  # the Cookie header's optional whitespace


@PROPERTY
@given(
    data=st.data(),
    space=st.tuples(OWS, OWS, OWS, OWS),
    before=st.sampled_from(["", "theme=dark; ", "theme=dark;", "a = b ;\t"]),
    after=st.sampled_from(["", "; lang=en", ";lang = en "]),
)
def test_whitespace_around_the_name_the_equals_and_the_value_carries_the_issued_cookie(
    server_side: Subject,
    data: st.DataObject,
    space: tuple[str, str, str, str],
    before: str,
    after: str,
) -> None:
    value = data.draw(st.sampled_from(sorted(server_side.issued)))
    header = f"{before}{space[0]}session{space[1]}={space[2]}{value}{space[3]}{after}"
    answer = server_side.call(header)
    assert answer.status == "200 OK", header
    assert (answer.new, answer.id) == (False, server_side.issued[value]), header
    assert server_side.counter is not None
    assert set(server_side.counter.take()) == {store_key(answer.id)}, header
    # The value itself must still be exactly the issued text: whitespace inside it
    # (or anything else) is no part of the optional whitespace.
    middle = data.draw(st.integers(1, len(value) - 1))
    spaced = f"session{space[1]}={space[2]}{value[:middle]} {value[middle:]}"
    check_header(server_side, spaced)


@PROPERTY
@given(st.text(st.characters(max_codepoint=0x2FF), max_size=200))
def test_only_what_sign_produced_unsigns(text: str) -> None:
    verified = SIGNER.unsign(text)
    if verified is not None:
        assert SIGNER.sign(verified[0]) == text or not verified[1]


@PROPERTY
@given(st.text(st.sampled_from(B64), min_size=43, max_size=43))
def test_a_signed_value_round_trips_and_any_other_spelling_is_refused(session_id: str) -> None:
    signed = SIGNER.sign(session_id)
    assert SIGNER.unsign(signed) == (session_id, True)
    signature = signed.rsplit(".", 1)[1]
    for other in {signature + "=", signature[:-1] + "=" + signature[-1], signature + "\x00"}:
        assert SIGNER.unsign(f"{session_id}.{other}") is None


@PROPERTY
@given(st.text(LATIN_1, max_size=80))
def test_decode_canonical_accepts_exactly_the_canonical_spelling(text: str) -> None:
    decoded = decode_canonical(text)
    if decoded is not None:
        assert base64_encode(decoded).decode("ascii") == text


@PROPERTY
@given(st.binary(max_size=64))
def test_decode_canonical_reads_back_any_encoding(raw: bytes) -> None:
    assert decode_canonical(base64_encode(raw).decode("ascii")) == raw
    assert encode_canonical(raw) == base64_encode(raw).decode("ascii")


@PROPERTY
@given(st.text(LATIN_1, max_size=5000))
def test_the_cookie_backend_opens_any_value_without_error(value: str) -> None:
    backend = CookieBackend(KeyRing(SECRET), Lifetime())
    origin = backend.open(value)
    assert origin.new


# -- records read back from a store someone edited ---------------------------------

RECORD_TEXT = st.one_of(
    st.binary(max_size=200),
    st.tuples(
        st.sampled_from([b"1", b"0", b"2", b""]),
        st.lists(
            st.sampled_from([b"0", b"1", b"-1", b"1e9", b"99999999999999999999", b"x"]), max_size=5
        ),
        st.binary(max_size=60),
    ).map(lambda t: b" ".join([t[0], *t[1], t[2]])),
    st.text(max_size=60).map(lambda text: b"1 1700000000 1700000000 0 0 " + text.encode()),
    st.text(max_size=30).map(lambda key: b"1 F " + key.encode("utf-8", "replace")),
)


@PROPERTY
@given(raw=RECORD_TEXT)
def test_a_record_edited_in_the_store_never_breaks_a_request(
    server_side: Subject, raw: bytes
) -> None:
    assert server_side.counter is not None
    cookie = next(iter(server_side.issued))
    key = store_key(server_side.issued[cookie])
    store = server_side.counter.inner
    found = store.load(key)
    if found is None:
        assert store.save(key, raw, 3600, None)
    else:
        assert store.save(key, raw, 3600, found[1])
    assert Record.decode(raw) is None or isinstance(Record.decode(raw), Record)
    for path in ("/read", "/write"):
        answer = server_side.call(f"session={cookie}", path)
        assert answer.status == "200 OK", (raw, answer)
    server_side.counter.take()


@PROPERTY
@given(raw=RECORD_TEXT)
def test_the_plain_record_fast_path_reads_what_the_general_one_does(raw: bytes) -> None:
    # Record.decode splits a format 1 record once; the general form it stands for
    # partitions off the format, then splits the body.
    fmt, _, body = raw.partition(b" ")
    if fmt != b"1" or body[:2] == b"F ":
        return
    fields = body.split(b" ", 4)
    assert Record.decode(raw) == Record._parse(fields, 5)


# -- serialized values -----------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(max_size=20),
    st.dates(),
    st.datetimes(),
    st.uuids(),
    st.decimals(allow_nan=False, allow_infinity=False),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=5), inner, max_size=4),
        st.frozensets(st.one_of(st.integers(), st.text(max_size=5)), max_size=4),
    ),
    max_leaves=12,
)


@PROPERTY
@given(st.dictionaries(st.text(max_size=8), VALUES, max_size=5))
def test_any_storable_value_reads_back_unchanged(data: dict[str, Any]) -> None:
    assert loads(dumps(data)) == data


@PROPERTY
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_loading_any_text_gives_a_dict_or_a_value_error(text: str | bytes) -> None:
    with contextlib.suppress(ValueError):
        assert isinstance(loads(text), dict)


@PROPERTY
@given(
    st.sampled_from([" t", " s", " f", " b", " dt", " d", " u", " D", " m", " di"]),
    st.one_of(st.text(max_size=20), st.integers(), st.lists(st.text(max_size=3), max_size=3)),
)
def test_a_forged_tag_gives_a_value_error_at_worst(tag: str, payload: Any) -> None:
    with contextlib.suppress(ValueError):
        loads(json.dumps({"k": {tag: payload}}))


@PROPERTY
@given(st.text(alphabet=B64, min_size=1, max_size=60))
def test_signatures_are_itsdangerous_signatures(value: str) -> None:
    # The signer calls hmac itself for speed; what it makes and accepts stays itsdangerous'.
    keys = KeyRing(SECRET, [SECRET[::-1]])
    derived = keys.derive("wsgi_session.id")
    reference = Signer(derived, digest_method=hashlib.sha256, key_derivation="none", sep=".")
    old = Signer(derived[0], digest_method=hashlib.sha256, key_derivation="none", sep=".")
    assert SIGNER.sign(value) == reference.sign(value).decode("ascii")
    assert reference.unsign(SIGNER.sign(value)).decode("ascii") == value
    assert SIGNER.unsign(old.sign(value).decode("ascii")) == (value, False)


# -- records ----------------------------------------------------------------------

OWNERS = st.none() | st.builds(
    Owner,
    st.text(B64, min_size=1, max_size=12),
    st.integers(0, 2**40),
    # Not "-": the header spells "no client" so, and encode_client never writes it
    # (base64 of a JSON list is at least 8 characters).
    st.text(B64, max_size=12).filter(lambda client: client != "-"),
)


@PROPERTY
@given(
    created=st.integers(0, 2**40),
    accessed=st.integers(0, 2**40),
    permanent=st.booleans(),
    idle_timeout=st.none() | st.integers(1, 2**31),
    data=st.dictionaries(st.text(LATIN_1, max_size=5), st.text(LATIN_1, max_size=5), max_size=3),
    owner=OWNERS,
)
def test_a_record_reads_back_as_written(
    created: int,
    accessed: int,
    permanent: bool,
    idle_timeout: int | None,
    data: dict[str, str],
    owner: Owner | None,
) -> None:
    # _parse builds the tuple itself, in the fields' order: it must equal the named tuple's own.
    record = Record(created, accessed, permanent, idle_timeout, dumps(data), owner=owner)
    assert Record.decode(record.encode()) == record
    assert Record.decode_with_id(record.encode_with_id("an-id")) == (
        "an-id",
        record._replace(owner=None),
    )


@pytest.fixture(scope="module")
def migrating_side() -> Iterator[Subject]:
    """The plain middleware adopting Flask's cookie sessions, with old cookies Flask issued."""
    subject = migrating_subject(Path())
    for _ in range(3):
        subject.issue()
        subject.new_old_cookie()
    assert subject.counter is not None
    subject.counter.take()
    yield subject


@PROPERTY
@given(data=st.data())
def test_a_near_miss_of_an_old_cookie_is_never_adopted_nor_looked_up(
    migrating_side: Subject, data: st.DataObject
) -> None:
    issued = st.sampled_from(sorted(migrating_side.old_issued))
    edit = st.tuples(issued, st.integers(0, 200), st.integers(0, 3), st.text(LATIN_1, max_size=4))
    value = data.draw(
        edit.map(lambda e: e[0][: e[1]] + e[3] + e[0][e[1] + e[2] :]).filter(
            # Spaces and tabs around a value are the header's optional whitespace, not part
            # of the value: trimmed, such an edit is the issued cookie itself.
            lambda v: v.strip(" \t") not in migrating_side.old_issued and ";" not in v
        )
    )
    answer = migrating_side.call(f"session={value}")
    assert answer.status == "200 OK", (value, answer)
    assert migrating_side.counter is not None
    assert not migrating_side.counter.take(), value  # no lookup: Flask's signature said no
    assert answer.new, value

"""Only the exact cookie the server issued opens a session, for every store and adapter.

A signature's last base64 character carries unused bits, and base64 decoders
skip what is outside their alphabet, accept padding and the other alphabet's
``+``/``/``: each re-spelling below decodes to the issued bytes. Every one must
give a fresh session, with no store lookup and no error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hostile import STORES, Subject, subjects
from memcached_server import MemcachedServer
from redis_server import RedisServer

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
Respelling = Callable[[str, str], list[str]]


def unused_bits(value: str, name: str) -> list[str]:
    """The last character with the two bits a 32-byte signature does not use set."""
    index = ALPHABET.index(value[-1])
    return [f"{name}={value[:-1]}{ALPHABET[index ^ bits]}" for bits in (1, 2, 3)]


def padded(value: str, name: str) -> list[str]:
    return [f"{name}={value}=", f"{name}={value}=="]


def junk_in_signature(value: str, name: str) -> list[str]:
    head, sig = value.rsplit(".", 1)
    return [
        f"{name}={head}.{sig[:10]}{junk}{sig[10:]}"
        for junk in ("!!", "\x00", "~*", "\xe9", " ", "\t", "=")
    ] + [f"{name}={value}\x00", f"{name}={value}\xe9"]


def other_alphabet(value: str, name: str) -> list[str]:
    head, sig = value.rsplit(".", 1)
    assert "-" in sig and "_" in sig
    return [
        f"{name}={head}.{sig.replace('-', '+')}",
        f"{name}={head}.{sig.replace('_', '/')}",
        f"{name}={head}.{sig.replace('-', '+').replace('_', '/')}",
    ]


def quoted(value: str, name: str) -> list[str]:
    """Cookie-header quoting and backslash escapes (which some parsers undo).

    Not the header's optional whitespace around the ``=`` and the value: that
    is no part of the value (tests/test_properties.py holds it opens the session).
    """
    escaped = value.replace(".", "\\056")
    return [f'{name}="{value}"', f'{name}="{escaped}"', f'{name}= "{value}"']


RESPELLINGS: dict[str, Respelling] = {
    "unused_bits": unused_bits,
    "padded": padded,
    "junk_in_signature": junk_in_signature,
    "other_alphabet": other_alphabet,
    "quoted": quoted,
}


@pytest.fixture(scope="module")
def every_subject(
    tmp_path_factory: pytest.TempPathFactory,
    shared_memcached: MemcachedServer,
    shared_redis: RedisServer,
) -> Iterator[dict[str, Subject]]:
    files = tmp_path_factory.mktemp("hostile")
    with subjects(files, shared_memcached, shared_redis) as made:
        yield {subject.name: subject for subject in made}


def issued_with_both_alphabet_characters(subject: Subject) -> str:
    """An issued cookie whose signature has a '-' and a '_' to re-spell."""
    for _ in range(100):
        value = subject.issue()
        signature = value.rsplit(".", 1)[1]
        if "-" in signature and "_" in signature:
            return value
    raise AssertionError("100 signatures without both '-' and '_'")


@pytest.mark.parametrize("respelling", list(RESPELLINGS))
@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("adapter", ["wsgi", "flask", "django"])
def test_a_respelled_cookie_gets_a_fresh_session_without_a_lookup(
    every_subject: dict[str, Subject], store: str, adapter: str, respelling: str
) -> None:
    subject = every_subject[f"{store}/{adapter}"]
    value = issued_with_both_alphabet_characters(subject)
    session_id = subject.issued[value]
    name = subject.cookie_name

    # The cookie as issued opens its session (one lookup, for a server-side store).
    if subject.counter is not None:
        subject.counter.take()
    answer = subject.call(f"{name}={value}")
    assert (answer.status, answer.new, answer.id) == ("200 OK", False, session_id)
    if subject.counter is not None:
        assert sum(subject.counter.take().values()) == 1

    headers = RESPELLINGS[respelling](value, name)
    assert headers and all(header != f"{name}={value}" for header in headers)
    for header in headers:
        answer = subject.call(header)
        assert answer.status == "200 OK", (header, answer)
        assert answer.new and answer.id != session_id, header
        if subject.counter is not None:
            assert subject.counter.take() == {}, header


def test_a_respelled_encrypted_cookie_gets_a_fresh_session() -> None:
    from hostile import wsgi_subject

    from wsgi_session.backends.cookie import CookieStore

    subject = Subject("cookie", "wsgi", wsgi_subject(CookieStore(encrypt=True)), "session", None)
    for _ in range(100):
        value = subject.issue()
        if "-" in value and "_" in value:
            break
    assert "-" in value and "_" in value, value
    session_id = subject.issued[value]
    answer = subject.call(f"session={value}")
    assert (answer.new, answer.id) == (False, session_id)

    middle = len(value) // 2
    headers = [
        *unused_bits(value, "session"),
        *padded(value, "session"),
        *(f"session={value[:middle]}{junk}{value[middle:]}" for junk in ("!!", "\x00", "\xe9")),
        f"session={value.replace('-', '+')}",
        f"session={value.replace('_', '/')}",
        *quoted(value, "session")[::2],
    ]
    assert f"session={value}" not in headers
    for header in headers:
        answer = subject.call(header)
        assert answer.status == "200 OK", (header, answer)
        assert answer.new and answer.id != session_id, header

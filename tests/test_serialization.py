"""Tagged JSON: every supported type round-trips, nothing else is accepted."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from helpers import make, one_cookie, store_key
from markupsafe import Markup

from wsgi_session import Session
from wsgi_session.serialization import dumps, loads

AWARE = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
NAIVE = datetime(1999, 12, 31, 23, 59, 59)


class Html:
    """Not Markup, but has ``__html__``: stored as Markup."""

    def __html__(self) -> str:
        return "<b>bold</b>"


VALUES: dict[str, Any] = {
    "dict": {"a": 1, "nested": {"b": [1, 2]}},
    "empty_dict": {},
    "list": [1, "two", None, [3.5]],
    "str": 'héllo ☃ \x00 "quoted" \\',
    "empty_str": "",
    "int": 2**70,
    "negative": -7,
    "float": 0.1,
    "true": True,
    "false": False,
    "none": None,
    "tuple": (1, "a", (2, 3)),
    "empty_tuple": (),
    "bytes": bytes(range(256)),
    "aware": AWARE,
    "naive": NAIVE,
    "date": date(2024, 1, 31),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "decimal": Decimal("1.10"),
    "set": {3, 1, 2},
    "frozenset": frozenset({"x", "y"}),
    "markup": Markup("<i>hi</i>"),
    "html": Html(),
    "tuple_in_set": {(1, 2), (3, 4)},
    "list_of_tagged": [b"\xff", Decimal("-0"), {" t": 1}],
}


def same(expected: Any, actual: Any) -> None:
    """Equal and of exactly the same types, all the way down."""
    assert type(actual) is type(expected), (expected, actual)
    if isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            same(expected[key], actual[key])
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected)
        for want, got in zip(expected, actual, strict=True):
            same(want, got)
    else:
        assert actual == expected
        if isinstance(expected, Decimal):
            assert str(actual) == str(expected)


@pytest.mark.parametrize("name", [name for name in VALUES if name != "html"])
def test_value_round_trips_with_its_type(name: str) -> None:
    data = {name: VALUES[name]}

    same(data, loads(dumps(data)))


def test_datetimes_keep_their_timezone_or_lack_of_one() -> None:
    data = loads(dumps({"aware": AWARE, "naive": NAIVE}))

    assert data["aware"].utcoffset() == timedelta(hours=5, minutes=30)
    assert data["naive"].tzinfo is None
    assert type(loads(dumps({"d": date(2020, 1, 1)}))["d"]) is date


def test_objects_with_html_come_back_as_markup() -> None:
    loaded = loads(dumps({"html": Html(), "markup": Markup("<i>hi</i>")}))

    assert type(loaded["html"]) is Markup
    assert loaded["html"] == Markup("<b>bold</b>")
    assert type(loaded["markup"]) is Markup


@pytest.mark.parametrize(
    "data",
    [
        {" t": 1},
        {" di": {"x": 1}},
        {" di": [[" t", 1]]},
        {"a": {" t": [1, 2]}},
        {"a": [{" b": "AAAA"}, {" s": []}]},
        {"a": {" di": {" dt": "2020-01-01"}}},
        {"a": ({" u": "x"},)},
        {" t": 1, "other": 2},
        {"a": {" m": "<b>"}},
    ],
    ids=repr,
)
def test_dicts_that_look_like_tags_survive(data: dict[str, Any]) -> None:
    same(data, loads(dumps(data)))


def test_output_is_plain_tagged_json() -> None:
    parsed = json.loads(dumps(VALUES))

    assert parsed["tuple"] == {" t": [1, "a", {" t": [2, 3]}]}
    assert parsed["set"] == {" s": [1, 2, 3]}
    assert parsed["html"] == {" m": "<b>bold</b>"}
    assert parsed["decimal"] == {" D": "1.10"}


def test_equal_sets_serialize_identically() -> None:
    # 8 and 16 share a hash slot, so these equal sets iterate in different orders.
    assert list({8, 16}) != list({16, 8})

    assert dumps({"s": {8, 16}}) == dumps({"s": {16, 8}})
    assert dumps({"f": frozenset({8, 16})}) == dumps({"f": frozenset({16, 8})})


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ({"obj": object()}, ["'obj'", "object"]),
        ({"a": {"b": [1, Exception()]}}, ["['a']['b']", "Exception"]),
        ({"f": lambda: None}, ["'f'", "function"]),
        ({"r": range(3)}, ["'r'", "range"]),
        ({"c": 1j}, ["'c'", "complex"]),
        ({"t": timedelta(1)}, ["'t'", "timedelta"]),
    ],
)
def test_unsupported_value_raises_type_error_naming_key_and_type(
    data: dict[str, Any], fragments: list[str]
) -> None:
    with pytest.raises(TypeError) as error:
        dumps(data)

    for fragment in fragments:
        assert fragment in str(error.value)


def test_a_value_nested_too_deeply_raises_type_error_naming_the_key() -> None:
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]

    with pytest.raises(TypeError, match=r"\['cart'\] is nested too deeply"):
        dumps({"cart": deep})


@pytest.mark.parametrize(
    ("data", "fragment"),
    [({1: "x"}, "1"), ({"a": {2: "x"}}, "int"), ({"a": {(1,): "x"}}, "tuple"), ({None: 1}, "None")],
)
def test_non_str_dict_key_raises_type_error(data: dict[Any, Any], fragment: str) -> None:
    with pytest.raises(TypeError, match="key") as error:
        dumps(data)

    assert fragment in str(error.value)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[1]",
        "null",
        '"text"',
        b"\xff\xfe",
        '{" D": "abc"}',
        '{" u": 5}',
        '{" u": "not-a-uuid"}',
        '{" t": 5}',
        '{" b": "abc"}',
        '{" dt": "garbage"}',
        '{" d": 5}',
        '{" s": [[1]]}',
        '{" f": [{}]}',
        '{" di": 5}',
        '{" di": [[1, 2, 3]]}',
        '{" m": "<b>"}',
        "[" * 100_000,
    ],
    ids=lambda text: repr(text)[:30],
)
def test_malformed_input_raises_value_error(text: str | bytes) -> None:
    with pytest.raises(ValueError, match=r"."):
        loads(text)


# -- through the store ---------------------------------------------------------


def test_every_type_survives_a_round_trip_through_the_store() -> None:
    values = {k: v for k, v in VALUES.items() if k != "html"}

    def write(session: Session) -> None:
        session.update(values)

    def check(session: Session) -> bool:
        same(values, dict(session))
        return True

    client, _, store = make({"write": write, "check": check})
    cookie = one_cookie(client.get("/write"))

    assert client.get("/check").text == "True"
    assert client.get("/check").text == "True"
    assert store.calls["save"] == 1  # loaded sets/tuples/... compare equal: no spurious rewrite
    raw = store.inner.load(store_key(cookie.session_id))
    assert raw is not None
    assert raw[0].startswith(b"1 ")  # format version marker first


def test_unstorable_value_fails_loudly_over_http() -> None:
    client, _, store = make({"bad": lambda s: s.update(when=object())})

    with pytest.raises(TypeError, match="'when'"):
        client.get("/bad")
    assert store.calls["save"] == 0

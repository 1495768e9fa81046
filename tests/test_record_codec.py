"""Record's one-formatting encodings against their readable form (header, then data)."""

from __future__ import annotations

import pytest

from wsgi_session.owner import Owner
from wsgi_session.record import Record
from wsgi_session.serialization import EMPTY

RECORDS = [
    Record(1764600000.75, 1764600123.5, False, None, "{}"),
    Record(1764600000.0, 1764600000.0, True, 3600, '{"n":1,"name":"Zoë"}'),
    Record(1.0, 2.0, True, None, '{"s":"a b  c"}'),
]


@pytest.mark.parametrize("record", RECORDS)
def test_plain_encode_is_the_header_then_the_data(record: Record) -> None:
    assert record.encode() == record._header(False) + record.text.encode("utf-8")
    assert Record.decode(record.encode()) == record._replace(
        created=float(int(record.created)), accessed=float(int(record.accessed))
    )


@pytest.mark.parametrize("record", RECORDS)
def test_cookie_payload_is_the_head_the_id_then_the_data(record: Record) -> None:
    session_id = "x" * 43
    payload = record.encode_with_id(session_id)
    assert payload == record._head() + session_id.encode() + b" " + record.text.encode("utf-8")
    found = Record.decode_with_id(payload)
    assert found is not None and found[0] == session_id and found[1].text == record.text


def test_owned_encode_keeps_its_owner() -> None:
    record = RECORDS[1]._replace(owner=Owner("ab" * 32, 1764700000))
    assert record.encode() == record._header(False) + record.text.encode("utf-8")
    decoded = Record.decode(record.encode())
    assert decoded is not None and decoded.owner == record.owner


def test_a_forward_reads_back_retired_and_with_no_data() -> None:
    # ServerSideBackend.open refuses forwards by their empty text alone (a load
    # asks record.text, not record.retired): both kinds must read back so.
    key = "ab" * 32
    forward = Record.decode(Record.forwarding(key))
    assert forward is not None and forward.retired
    assert forward.forward == key and forward.text == EMPTY
    new_id = "x" * 43
    sealed = Record.decode(Record.sealed_forwarding(new_id, Clear()), Clear())
    assert sealed is not None and sealed.retired
    assert sealed.forward_id == new_id and sealed.text == EMPTY


class Clear:
    """A lock that does not encrypt: a sealed forward's layout, not its secrecy, is tested here."""

    def seal(self, data: bytes, header: bytes) -> bytes:
        return b"n" * 12 + data + b"t" * 16

    def open(self, sealed: bytes, header: bytes) -> bytes | None:
        return sealed[12:-16]

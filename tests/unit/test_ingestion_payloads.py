"""Request bodies of the ingestion API: one item or a batch, and 422 details that name the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from modstack.events import MAX_BATCH, MAX_SUBJECT_CHARS
from services.ingestion.payloads import (
    InvalidBody,
    ReportIn,
    label_event,
    label_key,
    message_event,
    parse_messages,
    parse_reports,
    unseen_reports,
)

MESSAGE = {
    "message_id": "m-1",
    "sender_id": "alice@example.com",
    "subject": "hello",
    "body": "see you",
    "sent_at": "2002-08-01T10:00:00Z",
}
LABEL = {
    "message_id": "m-1",
    "sender_id": "alice@example.com",
    "label": "spam",
    "source": "user_report",
    "reporter_id": "user-7",
    "labeled_at": "2002-08-01T11:00:00Z",
}


def reports_in(raw: bytes) -> list[ReportIn]:
    """The reports of a body, single or batch (what the labels route parses)."""
    return parse_reports(raw)[0]


def body(document: object) -> bytes:
    return json.dumps(document).encode()


def locations(exc: InvalidBody) -> list[tuple]:
    return [tuple(error["loc"]) for error in exc.errors]


def test_a_single_message_and_a_batch_parse_to_the_same_items() -> None:
    single = parse_messages(body(MESSAGE))
    batch = parse_messages(body({"messages": [MESSAGE, {**MESSAGE, "message_id": "m-2"}]}))
    assert [m.message_id for m in single] == ["m-1"]
    assert [m.message_id for m in batch] == ["m-1", "m-2"]
    assert batch[0] == single[0]


def test_an_invalid_field_in_a_batch_is_named_with_its_index() -> None:
    broken = {**MESSAGE, "sent_at": "yesterday"}
    with pytest.raises(InvalidBody) as caught:
        parse_messages(body({"messages": [MESSAGE, broken]}))
    assert locations(caught.value) == [("body", "messages", 1, "sent_at")]
    assert "messages.1.sent_at" in str(caught.value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"message_id": "  "}, "message_id"),
        ({"sender_id": ""}, "sender_id"),
        ({"subject": "x" * (MAX_SUBJECT_CHARS + 1)}, "subject"),
        ({"sent_at": "1970-01-01T00:00:00Z"}, "sent_at"),
        ({"sent_at": "2999-01-01T00:00:00Z"}, "sent_at"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_a_message_outside_the_contract_is_refused_naming_the_field(
    change: dict, field: str
) -> None:
    with pytest.raises(InvalidBody) as caught:
        parse_messages(body({**MESSAGE, **change}))
    assert ("body", field) in locations(caught.value)


def test_a_missing_field_is_named() -> None:
    incomplete = {k: v for k, v in MESSAGE.items() if k != "sender_id"}
    with pytest.raises(InvalidBody) as caught:
        parse_messages(body(incomplete))
    assert locations(caught.value) == [("body", "sender_id")]


def test_batches_must_hold_between_one_and_max_batch_items() -> None:
    with pytest.raises(InvalidBody) as empty:
        parse_messages(body({"messages": []}))
    assert locations(empty.value) == [("body", "messages")]
    too_many = [{**MESSAGE, "message_id": f"m-{i}"} for i in range(MAX_BATCH + 1)]
    with pytest.raises(InvalidBody) as over:
        parse_messages(body({"messages": too_many}))
    assert locations(over.value) == [("body", "messages")]
    assert str(MAX_BATCH) in over.value.errors[0]["msg"]
    assert len(parse_messages(body({"messages": too_many[:MAX_BATCH]}))) == MAX_BATCH


def test_a_body_that_is_not_json_is_refused_as_such() -> None:
    with pytest.raises(InvalidBody) as caught:
        parse_messages(b'{"message_id": ')
    assert caught.value.errors[0]["type"] == "json_invalid"
    assert locations(caught.value) == [("body",)]


def test_errors_do_not_echo_the_input() -> None:
    with pytest.raises(InvalidBody) as caught:
        parse_messages(body({**MESSAGE, "body": 12345, "sent_at": "never"}))
    assert all("input" not in error for error in caught.value.errors)


def test_labels_accept_only_known_labels_and_sources() -> None:
    assert reports_in(body(LABEL))[0].label == "spam"
    with pytest.raises(InvalidBody) as caught:
        reports_in(body({"labels": [{**LABEL, "label": "maybe", "source": "rumour"}]}))
    assert set(locations(caught.value)) == {
        ("body", "labels", 0, "label"),
        ("body", "labels", 0, "source"),
    }


@pytest.mark.parametrize("source", ["moderator", "corpus"])
def test_the_public_endpoint_refuses_moderator_and_corpus_labels(source: str) -> None:
    with pytest.raises(InvalidBody) as caught:
        reports_in(body({**LABEL, "source": source}))
    assert locations(caught.value) == [("body", "source")]


def test_a_report_must_name_its_reporter() -> None:
    without = {k: v for k, v in LABEL.items() if k != "reporter_id"}
    with pytest.raises(InvalidBody) as caught:
        reports_in(body(without))
    assert locations(caught.value) == [("body", "reporter_id")]
    assert reports_in(body({k: v for k, v in LABEL.items() if k != "source"}))[0].source == (
        "user_report"
    )


def test_reports_on_messages_not_seen_from_that_sender_are_named_by_index() -> None:
    reports, batch = parse_reports(
        body({"labels": [LABEL, {**LABEL, "message_id": "m-2"}, {**LABEL, "message_id": "m-3"}]})
    )
    assert batch
    senders = {"m-1": "alice@example.com", "m-3": "mallory@example.com"}
    errors = unseen_reports(reports, senders, batch)
    assert [e["loc"] for e in errors] == [
        ("body", "labels", 1, "message_id"),
        ("body", "labels", 2, "message_id"),
    ]
    assert all(e["type"] == "message_not_seen" for e in errors)
    single, batch = parse_reports(body({**LABEL, "message_id": "m-9"}))
    assert [e["loc"] for e in unseen_reports(single, senders, batch)] == [("body", "message_id")]


def test_events_carry_the_received_at_stamp_and_naive_times_are_utc() -> None:
    received = datetime(2026, 1, 1, tzinfo=UTC)
    [item] = parse_messages(body({**MESSAGE, "sent_at": "2002-08-01T10:00:00"}))
    event = message_event(item, received)
    assert event.received_at == received
    assert event.sent_at == datetime(2002, 8, 1, 10, tzinfo=UTC)
    [label] = reports_in(body(LABEL))
    event = label_event(label, received, "app")
    assert event.received_at == received
    assert event.reporter_id == "app/user-7"


def test_a_label_is_identified_by_message_source_and_reporter() -> None:
    received = datetime(2026, 1, 1, tzinfo=UTC)
    [report] = reports_in(body(LABEL))
    [other] = reports_in(body({**LABEL, "reporter_id": "user-8"}))
    [repeat] = reports_in(body({**LABEL, "labeled_at": "2002-08-02T00:00:00Z"}))
    key = label_key(label_event(report, received, "app"))
    assert key != label_key(label_event(other, received, "app"))
    assert key != label_key(label_event(report, received, "other-app"))
    assert key == label_key(label_event(repeat, received, "app"))

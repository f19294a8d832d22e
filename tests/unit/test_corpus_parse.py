"""The RFC 822 parsing rules of modstack.corpus.parse, on hand-made mails."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modstack.corpus.build import content_hash
from modstack.corpus.parse import ParsedMail, Rejection, parse_mail

ENVELOPE = "From alice@example.com  Tue Aug  6 11:52:20 2002\n"
RECEIVED = (
    "Received: from mail.example.com (mail.example.com [10.0.0.1])\n"
    "\tby mx.example.org; Tue, 06 Aug 2002 12:52:20 +0100\n"
)


def mail(headers: str, body: str = "Hello there.\n", *, envelope: bool = True) -> bytes:
    """A raw mail: optional mbox line, a Received header, the given headers, the body."""
    text = (ENVELOPE if envelope else "") + RECEIVED + headers.strip("\n") + "\n\n" + body
    return text.encode("utf-8")


def parsed(raw: bytes) -> ParsedMail:
    result = parse_mail(raw)
    assert isinstance(result, ParsedMail), result
    return result


BASIC = "From: Alice <Alice@Example.COM>\nSubject: hi\nDate: Tue, 6 Aug 2002 11:00:00 +0200\n"


def test_basic_mail_gives_lowercased_sender_utc_date_and_no_repair() -> None:
    result = parsed(mail(BASIC + "Message-ID: <abc@example.com>\n"))
    assert result.sender_id == "alice@example.com"
    assert result.sender_domain == "example.com"
    assert result.sent_at == datetime(2002, 8, 6, 9, 0, tzinfo=UTC)
    assert result.subject == "hi"
    assert result.body == "Hello there."
    assert result.repaired == ""
    assert result.header_message_id == "<abc@example.com>"


@pytest.mark.parametrize("date", ["Tue, 6 Aug 2002 11:00:00", "Tue, 6 Aug 2002 11:00:00 -0000"])
def test_date_without_zone_is_read_as_utc(date: str) -> None:
    result = parsed(mail(f"From: a@example.com\nSubject: s\nDate: {date}\n"))
    assert result.sent_at == datetime(2002, 8, 6, 11, 0, tzinfo=UTC)
    assert result.repaired == "date_zone_missing_utc"


def test_date_with_an_impossible_offset_is_read_as_utc() -> None:
    result = parsed(mail("From: a@example.com\nSubject: s\nDate: Tue, 6 Aug 2002 03:00:00 -1900\n"))
    assert result.sent_at == datetime(2002, 8, 6, 3, 0, tzinfo=UTC)
    assert result.repaired == "date_zone_invalid_utc"


def test_year_102_is_repaired_to_2002() -> None:
    result = parsed(mail("From: a@example.com\nSubject: s\nDate: Tue, 06 Aug 102 10:00:00 +0000\n"))
    assert result.sent_at == datetime(2002, 8, 6, 10, 0, tzinfo=UTC)
    assert result.repaired == "date_year_102"


@pytest.mark.parametrize(
    "date", ["Wed, 04 Oct 2028 12:05:01 -0400", "Fri, 23 Jul 1993 17:36:34 +0000", "not a date"]
)
def test_absurd_or_unparseable_date_falls_back_to_the_delivery_time(date: str) -> None:
    result = parsed(mail(f"From: a@example.com\nSubject: s\nDate: {date}\n"))
    # The Received header says 12:52:20 +0100.
    assert result.sent_at == datetime(2002, 8, 6, 11, 52, 20, tzinfo=UTC)
    assert result.repaired == "date_from_delivery"


def test_missing_date_without_received_uses_the_mbox_from_line() -> None:
    raw = (ENVELOPE + "From: a@example.com\nSubject: s\n\nbody\n").encode()
    result = parsed(raw)
    assert result.sent_at == datetime(2002, 8, 6, 11, 52, 20, tzinfo=UTC)
    assert result.repaired == "date_from_delivery"


def test_absurd_date_with_no_delivery_time_is_rejected() -> None:
    raw = b"From: a@example.com\nSubject: s\nDate: Wed, 04 Oct 2028 12:05:01 -0400\n\nbody\n"
    rejection = parse_mail(raw)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "unusable_date"


def test_plausible_date_with_no_delivery_time_is_kept() -> None:
    raw = b"From: a@example.com\nSubject: s\nDate: Tue, 6 Aug 2002 11:00:00 +0000\n\nbody\n"
    assert parsed(raw).sent_at == datetime(2002, 8, 6, 11, 0, tzinfo=UTC)


def test_date_far_ahead_of_delivery_is_replaced() -> None:
    result = parsed(
        mail("From: a@example.com\nSubject: s\nDate: Tue, 15 Oct 2002 13:07:24 +0000\n")
    )
    assert result.sent_at == datetime(2002, 8, 6, 11, 52, 20, tzinfo=UTC)
    assert result.repaired == "date_from_delivery"


def test_html_only_mail_is_stripped_and_flagged() -> None:
    html = (
        "<html><head><style>p {color: red}</style><script>var x = 1;</script></head>"
        "<body><p>Buy <b>now</b>&nbsp;&amp; save</p><a href='http://x'>click</a></body></html>"
    )
    result = parsed(mail(BASIC + "Content-Type: text/html; charset=us-ascii\n", html))
    assert result.is_html
    assert "<" not in result.body
    assert "color" not in result.body and "var x" not in result.body
    assert "Buy" in result.body and "now" in result.body and "& save" in result.body
    assert "click" in result.body


def test_unclosed_head_does_not_swallow_the_page() -> None:
    html = "<html><head><body><p>Romance in a bottle</p></body></html>"
    result = parsed(mail(BASIC + "Content-Type: text/html\n", html))
    assert result.body == "Romance in a bottle"


def test_plain_part_holding_an_html_document_counts_as_html() -> None:
    result = parsed(
        mail(BASIC + "Content-Type: text/plain\n", "<html><body>Hi <b>you</b></body></html>")
    )
    assert result.is_html
    assert result.body.split() == ["Hi", "you"]


def test_plain_text_that_talks_about_html_tags_stays_plain() -> None:
    text = "The spam said <html><body>buy</body></html> in a text/plain part.\n"
    result = parsed(mail(BASIC + "Content-Type: text/plain\n", text))
    assert not result.is_html
    assert "<html>" in result.body


def test_multipart_alternative_prefers_the_plain_part() -> None:
    body = (
        "--XX\nContent-Type: text/plain; charset=utf-8\n\nplain version\n"
        "--XX\nContent-Type: text/html; charset=utf-8\n\n<p>html version</p>\n"
        "--XX--\n"
    )
    headers = BASIC + 'MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="XX"\n'
    result = parsed(mail(headers, body))
    assert result.body == "plain version"
    assert not result.is_html


def test_attachments_are_not_part_of_the_body() -> None:
    body = (
        "--XX\nContent-Type: text/plain\n\nsee attached\n"
        "--XX\nContent-Type: text/plain\nContent-Disposition: attachment; filename=a.txt\n\n"
        "secret attachment text\n--XX--\n"
    )
    headers = BASIC + 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="XX"\n'
    assert parsed(mail(headers, body)).body == "see attached"


def test_unknown_charset_falls_back_to_latin1() -> None:
    raw = mail(BASIC + "Content-Type: text/plain; charset=unknown-8bit\n", "")
    raw = raw + "caf\xe9 cr\xe8me\n".encode("latin-1")
    result = parsed(raw)
    assert result.body == "café crème"
    assert result.repaired == "charset_latin1"


def test_undeclared_8bit_body_is_tried_as_utf8_then_latin1() -> None:
    raw_utf8 = mail(BASIC, "naïve\n")
    assert parsed(raw_utf8).body == "naïve"
    raw_latin1 = mail(BASIC, "") + "na\xefve\n".encode("latin-1")
    assert parsed(raw_latin1).body == "naïve"
    assert parsed(raw_latin1).repaired == ""


def test_encoded_subject_words_are_decoded() -> None:
    headers = (
        "From: a@example.com\nDate: Tue, 6 Aug 2002 11:00:00 +0000\n"
        "Subject: =?utf-8?B?R3LDvMOfZQ==?= and =?iso-8859-1?Q?caf=E9?=\n"
    )
    assert parsed(mail(headers)).subject == "Grüße and café"


def test_encoded_subject_with_unknown_charset_still_decodes() -> None:
    headers = (
        "From: a@example.com\nDate: Tue, 6 Aug 2002 11:00:00 +0000\nSubject: =?x-bogus?Q?caf=E9?=\n"
    )
    assert parsed(mail(headers)).subject == "café"


def test_folded_subject_is_unfolded() -> None:
    headers = "From: a@example.com\nDate: Tue, 6 Aug 2002 11:00:00 +0000\nSubject: one\n\ttwo\n"
    assert parsed(mail(headers)).subject == "one two"


def test_missing_from_falls_back_to_reply_to() -> None:
    headers = (
        "Reply-To: Spammer <Spammer@Example.net>\nSender: owner-list@lists.example.org\n"
        "Subject: s\nDate: Tue, 6 Aug 2002 11:00:00 +0000\n"
    )
    result = parsed(mail(headers))
    assert result.sender_id == "spammer@example.net"
    assert result.repaired == "sender_fallback"


def test_from_with_two_at_signs_falls_back_to_the_envelope_sender() -> None:
    headers = "From: x@y@example.com\nSubject: s\nDate: Tue, 6 Aug 2002 11:00:00 +0000\n"
    result = parsed(mail(headers))
    assert result.sender_id == "alice@example.com"
    assert result.repaired == "sender_fallback"


def test_bounce_with_null_sender_is_rejected_as_missing_from() -> None:
    raw = (
        b"From MAILER-DAEMON  Tue Jun 26 13:05:04 2001\nReturn-Path: <>\n"
        b'From: "" <>\nSubject: failure notice\nDate: Tue, 26 Jun 2001 13:05:04 +0000\n\nbounced\n'
    )
    rejection = parse_mail(raw)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "missing_from"


def test_mail_without_subject_and_text_is_rejected() -> None:
    raw = mail("From: a@example.com\nDate: Tue, 6 Aug 2002 11:00:00 +0000\n", "<html></html>")
    rejection = parse_mail(raw)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "no_text"


def test_content_hash_ignores_case_and_whitespace_but_not_words() -> None:
    assert content_hash("a@x.com", "Hello  World", "body\n text") == content_hash(
        "A@X.com", "hello world", "body text"
    )
    assert content_hash("a@x.com", "Hello", "body") != content_hash("a@x.com", "Hello", "bodies")

"""Turn one raw RFC 822 mail into a message row, repairing or rejecting it by documented rules.

Pure functions, no I/O. The rules, each named in the `repaired` column (several joined by ","):

Sender
- `sender_fallback`: the From header is missing or holds no usable address (e.g. two "@") ->
  the first usable address of Reply-To (for spam, where the spammer wants the answers), Sender,
  Return-Path, or the envelope sender of the mbox "From " line. Reply-To comes first because
  Sender and Return-Path name the mailing-list owner for list traffic.
  A mail with none of them (bounces: `From: <>`, `MAILER-DAEMON`) is rejected: `missing_from`.

Date (`sent_at` is the Date header in UTC; the delivery time used below is the timestamp of
the topmost Received header, else the mbox "From " line read as UTC)
- `date_year_102`: a year 100-199 is a `tm_year`-style offset from 1900 (spam tools wrote "102"
  for 2002) -> year + 1900.
- `date_zone_missing_utc`: no zone, "-0000" (RFC 2822: zone unknown) or an unknown zone name
  -> UTC.
- `date_zone_invalid_utc`: an offset beyond +-14h ("-1900": only spam tools write these) -> UTC.
- `date_from_delivery`: the Date is missing, unparseable, or absurd -> the delivery time. Absurd
  means outside the corpus years (before 2000 or from 2003 on: 1980, 1993, 2020, 2028), more
  than 7 days after delivery (a sender clock far ahead) or more than 365 days before it.
  Mailing-list digests legitimately arrive weeks late, hence the wide backward window.
  With neither a usable Date nor a delivery time the mail is rejected: `unusable_date`.

Body
- Plain text preferred: the text/plain parts that are not attachments, joined. Else the
  text/html parts with the HTML stripped (`is_html` = True: the mail had HTML only). A text/plain
  part that is in fact an HTML document (it opens with <html>, <head>, <body> or a doctype:
  common in spam) counts as HTML; plain text that merely talks about tags stays plain.
- `charset_latin1`: a part names a charset Python does not know (`unknown-8bit`, `default`,
  ...) -> its bytes are decoded as latin-1, which never fails. Parts without a charset are tried
  as UTF-8 first, then latin-1 (common 8-bit mail, not counted as a repair).
- A mail with neither a subject nor any text is rejected: `no_text`.

The build adds `checksum_mismatch` (the mail is not the bytes its MD5 names) and `parse_error`
(an exception no rule foresaw; none in the 0.2.3 package).
"""

from __future__ import annotations

import calendar
import codecs
import email
import email.errors
import email.utils
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.header import decode_header, make_header
from email.message import Message

from bs4 import BeautifulSoup

# Bump when a rule changes: the parse cache is keyed on it.
PARSER_VERSION = "4"

MAX_DAYS_AFTER_DELIVERY = 7
MAX_DAYS_BEFORE_DELIVERY = 365
MAX_ZONE_OFFSET_S = 14 * 3600
# The SpamAssassin corpus was collected in 2000-2002; a Date outside these years is a bad clock.
EARLIEST_PLAUSIBLE = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_PLAUSIBLE = datetime(2003, 1, 1, tzinfo=UTC)

_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")
_HTML_DOCUMENT = re.compile(r"^\s*(?:<!doctype[^>]*>\s*)?<(?:html|head|body)\b", re.IGNORECASE)
_ENVELOPE = re.compile(r"^From (\S+)\s+(.+)$")


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """A usable mail (before corpus-level columns: label, period, duplicates)."""

    sender_id: str
    sender_domain: str
    subject: str
    body: str
    sent_at: datetime
    is_html: bool
    repaired: str
    header_message_id: str
    date_header: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """A mail that cannot be used, and why."""

    reason: str
    detail: str


def parse_mail(raw: bytes) -> ParsedMail | Rejection:
    """Parse one raw mail; every failure mode the corpus shows ends as a `Rejection`."""
    # compat32 parses the whole corpus in under a second; policy.default takes ~30x longer.
    msg = email.message_from_bytes(raw, policy=policy.compat32)
    envelope_sender, envelope_time = _envelope(raw)
    repairs: list[str] = []

    sender = _address(header_text(msg, "From"))
    if sender is None:
        fallbacks = [header_text(msg, h) for h in ("Reply-To", "Sender", "Return-Path")]
        sender = next(filter(None, map(_address, [*fallbacks, envelope_sender or ""])), None)
        if sender is None:
            return Rejection("missing_from", f"From: {header_text(msg, 'From')!r}")
        repairs.append("sender_fallback")

    date_header = header_text(msg, "Date")
    delivered_at = _delivery_time(msg) or envelope_time
    sent_at = _sent_at(date_header, delivered_at, repairs)
    if sent_at is None:
        return Rejection("unusable_date", f"Date: {date_header!r}, no delivery time")

    body, is_html = extract_body(msg, repairs)
    subject = header_text(msg, "Subject")
    if not body and not subject:
        return Rejection("no_text", "no subject and no text part")

    return ParsedMail(
        sender_id=sender,
        sender_domain=sender.rpartition("@")[2],
        subject=subject,
        body=body,
        sent_at=sent_at,
        is_html=is_html,
        repaired=",".join(dict.fromkeys(repairs)),
        header_message_id=header_text(msg, "Message-ID"),
        date_header=date_header,
    )


# --- headers ---------------------------------------------------------------------------------


def header_text(msg: Message, name: str) -> str:
    """A header as clean text: RFC 2047 words decoded, raw 8-bit bytes guessed, unfolded."""
    value = _raw_header(msg, name)
    if value is None:
        return ""
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        # compat32 keeps undeclared 8-bit header bytes as surrogate escapes.
        value = _decode_bytes(value.encode("ascii", "surrogateescape"), None)[0]
    try:
        parts = decode_header(value)
        text = str(make_header(parts))
    except (LookupError, UnicodeError, email.errors.HeaderParseError):
        text = _join_header_parts(value)
    return _SPACES.sub(" ", text.replace("\n", " ")).strip()


def _raw_header(msg: Message, name: str) -> str | None:
    # raw_items() returns the stored string; msg[name] would wrap 8-bit values in Header objects.
    wanted = name.lower()
    for key, value in msg.raw_items():
        if key.lower() == wanted:
            return str(value)
    return None


def _join_header_parts(value: str) -> str:
    try:
        parts = decode_header(value)
    except email.errors.HeaderParseError:
        return value
    return "".join(
        part if isinstance(part, str) else _decode_bytes(part, charset)[0]
        for part, charset in parts
    )


def _address(value: str) -> str | None:
    address = email.utils.parseaddr(value)[1].strip().lower()
    return address if _ADDRESS.match(address) else None


# --- dates -----------------------------------------------------------------------------------


def _sent_at(
    date_header: str, delivered_at: datetime | None, repairs: list[str]
) -> datetime | None:
    sent_at = _date_to_utc(date_header, repairs) if date_header else None
    if sent_at is not None and not EARLIEST_PLAUSIBLE <= sent_at < LATEST_PLAUSIBLE:
        sent_at = None
    if sent_at is not None and delivered_at is not None:
        too_late = sent_at > delivered_at + timedelta(days=MAX_DAYS_AFTER_DELIVERY)
        too_early = sent_at < delivered_at - timedelta(days=MAX_DAYS_BEFORE_DELIVERY)
        if too_late or too_early:
            sent_at = None
    if sent_at is None:
        # The Date-specific repairs no longer apply once the delivery time replaces the Date.
        repairs[:] = [r for r in repairs if not r.startswith("date_")]
        if delivered_at is None:
            return None
        repairs.append("date_from_delivery")
        return delivered_at
    return sent_at


def _date_to_utc(value: str, repairs: list[str]) -> datetime | None:
    try:
        # Naive result = no zone or "-0000" ("zone unknown" in RFC 2822).
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if 100 <= parsed.year < 200:
        try:
            parsed = parsed.replace(year=parsed.year + 1900)
        except ValueError:  # 29 February of a non-leap year
            return None
        repairs.append("date_year_102")
    offset = parsed.utcoffset()
    if offset is None:
        parsed = parsed.replace(tzinfo=UTC)
        repairs.append("date_zone_missing_utc")
    elif abs(offset.total_seconds()) > MAX_ZONE_OFFSET_S:
        parsed = parsed.replace(tzinfo=UTC)
        repairs.append("date_zone_invalid_utc")
    return parsed.astimezone(UTC)


def _delivery_time(msg: Message) -> datetime | None:
    """Timestamp the final mail server wrote: the topmost Received header that has one."""
    for value in msg.get_all("Received") or []:
        stamp = str(value).rpartition(";")[2].strip()
        try:
            parsed = email.utils.parsedate_to_datetime(stamp) if stamp else None
        except (TypeError, ValueError, IndexError, OverflowError):
            continue
        offset = parsed.utcoffset() if parsed is not None else None
        if (
            parsed is not None
            and offset is not None
            and abs(offset.total_seconds()) <= MAX_ZONE_OFFSET_S
        ):
            delivered = parsed.astimezone(UTC)
            # Relays with broken clocks exist too ("0102"): fall through to the next hop.
            if EARLIEST_PLAUSIBLE <= delivered < LATEST_PLAUSIBLE:
                return delivered
    return None


def _envelope(raw: bytes) -> tuple[str | None, datetime | None]:
    """Sender and time of the mbox "From addr  Tue Aug  6 11:52:20 2002" line, if any."""
    first_line = raw.split(b"\n", 1)[0].decode("latin-1").strip()
    match = _ENVELOPE.match(first_line)
    if match is None:
        return None, None
    try:
        stamp = time.strptime(" ".join(match.group(2).split()), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        return match.group(1), None
    delivered = datetime.fromtimestamp(calendar.timegm(stamp), tz=UTC)
    return match.group(1), delivered if EARLIEST_PLAUSIBLE <= delivered < LATEST_PLAUSIBLE else None


# --- body ------------------------------------------------------------------------------------


def extract_body(msg: Message, repairs: list[str]) -> tuple[str, bool]:
    """Plain text of the mail and whether it came from HTML only."""
    plain: list[str] = []
    html: list[str] = []
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        if (part.get("Content-Disposition") or "").lower().startswith("attachment"):
            continue
        text = _part_text(part, repairs)
        is_html_part = part.get_content_subtype() == "html" or _HTML_DOCUMENT.match(text)
        (html if is_html_part else plain).append(text)
    if any(t.strip() for t in plain):
        return _tidy("\n".join(plain)), False
    if html:
        return _tidy("\n".join(strip_html(h) for h in html)), True
    return "", False


def _part_text(part: Message, repairs: list[str]) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    text, fell_back = _decode_bytes(payload, part.get_content_charset())
    if fell_back:
        repairs.append("charset_latin1")
    return text


def _decode_bytes(data: bytes, charset: str | None) -> tuple[str, bool]:
    """Decode with the declared charset; returns (text, True) when it fell back to latin-1."""
    if charset:
        try:
            codecs.lookup(charset)
        except LookupError:
            return data.decode("latin-1"), True
        return data.decode(charset, errors="replace"), False
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("latin-1"), False


def strip_html(html: str) -> str:
    """Visible text of an HTML document (scripts and styles dropped)."""
    soup = BeautifulSoup(html, "html.parser")
    # Not <head>: spam often leaves it unclosed, so the parser nests the whole page inside it.
    for hidden in soup(["script", "style"]):
        hidden.decompose()
    return soup.get_text("\n")


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()

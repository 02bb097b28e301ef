"""Raw email bytes -> the fields intake needs, shared by Gmail sync and `.eml`/mbox import.

Pure and total: hostile or broken input never raises. It either becomes a `ParsedEmail` (with
`charset_problems` set when text had to be guessed) or, when it is not a customer request at all,
a `Skipped` with the reason.
"""

from __future__ import annotations

import codecs
import re
import textwrap
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import errors
from email.message import Message
from email.parser import BytesParser
from email.policy import EmailPolicy
from email.utils import getaddresses, parsedate_to_datetime
from enum import StrEnum
from html import escape
from html.parser import HTMLParser
from typing import Any, cast

import html2text
from mailparser_reply import EmailMessage as ReplyMessage
from pydantic import BaseModel, ConfigDict


class Attachment(BaseModel):
    model_config = ConfigDict(frozen=True)

    filename: str | None
    content_type: str
    size: int


class ParsedEmail(BaseModel):
    model_config = ConfigDict(frozen=True)

    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    subject: str
    from_address: str
    from_name: str | None
    to_addresses: list[str]
    date: datetime | None
    text: str
    full_text: str
    attachments: list[Attachment]
    charset_problems: bool


class SkipReason(StrEnum):
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    OWN_MAIL = "own_mail"
    NO_SENDER = "no_sender"
    EMPTY = "empty"


class Skipped(BaseModel):
    model_config = ConfigDict(frozen=True)

    reason: SkipReason
    detail: str


def parse_email(raw: bytes, *, own_addresses: Collection[str] = ()) -> ParsedEmail | Skipped:
    msg = BytesParser(policy=_POLICY).parsebytes(bytes(raw))
    if isinstance(own_addresses, str):  # a lone address would otherwise be iterated letter by letter
        own_addresses = (own_addresses,)
    from_name, from_address = (_addresses(msg, "From") or [("", "")])[0]
    subject = " ".join(_header(msg, "Subject").split())

    if skipped := _skip_reason(msg, from_address, subject, {a.strip().lower() for a in own_addresses}):
        return skipped
    if "@" not in from_address:
        return Skipped(reason=SkipReason.NO_SENDER, detail=f"no usable From address: {_header(msg, 'From')!r}")

    body = _Body()
    _walk(msg, body, forwarded=False)
    full_text = _tidy("\n\n".join(text for text, _ in body.segments))
    if not full_text and not body.attachments:
        return Skipped(reason=SkipReason.EMPTY, detail="no text and no attachments")
    own_text = "\n\n".join(text for text, forwarded in body.segments if not forwarded)

    return ParsedEmail(
        message_id=next(iter(_message_ids(_header(msg, "Message-ID"))), None),
        in_reply_to=next(iter(_message_ids(_header(msg, "In-Reply-To"))), None),
        references=_message_ids(_header(msg, "References")),
        subject=subject,
        from_address=from_address,
        from_name=from_name or None,
        to_addresses=[address for _, address in _addresses(msg, "To")],
        date=_date(msg),
        text=_latest_reply(own_text) or full_text,
        full_text=full_text,
        attachments=body.attachments,
        charset_problems=body.charset_problems,
    )


# --- headers -------------------------------------------------------------------------------------


class _LenientPolicy(EmailPolicy):
    """policy.default, except that a header its parsers crash on reads as its raw text.

    CPython's structured header parsers still raise on some hostile values (an IndexError in the
    Content-Type parameter parser, hit by our fuzz test), even from inside BytesParser itself.
    """

    def header_fetch_parse(self, name: str, value: str) -> Any:
        try:
            return super().header_fetch_parse(name, value)
        except Exception:
            return "".join(value.splitlines())


_POLICY = _LenientPolicy()

# Precedence: list is a mailing list. It is not a customer asking us something, and answering it
# would mail the whole list, so it is skipped like the bulk/junk/auto_reply values.
_AUTO_PRECEDENCE = {"bulk", "auto_reply", "junk", "list"}
_OUT_OF_OFFICE = (
    "out of office", "out of the office", "automatic reply", "auto reply", "auto-reply", "autoreply",
    "on vacation", "abwesen", "automatische antwort", "réponse automatique", "absence",
    "respuesta automática", "risposta automatica", "fuori ufficio", "afwezig", "automatisch antwoord",
)  # fmt: skip


def _skip_reason(msg: Message, sender: str, subject: str, own: set[str]) -> Skipped | None:
    def skip(reason: SkipReason, detail: str) -> Skipped:
        return Skipped(reason=reason, detail=detail)

    if sender and sender in own:
        return skip(SkipReason.OWN_MAIL, f"From is our own address {sender}")
    # Bounces come before auto-replies: DSNs usually carry Auto-Submitted too, and "this address
    # bounced" is the more useful thing to know.
    if sender.partition("@")[0] in ("mailer-daemon", "postmaster"):
        return skip(SkipReason.BOUNCE, f"From: {sender}")
    if msg.get_content_type() == "multipart/report":
        report_type = _clean(str(msg.get_param("report-type", ""))).lower()
        if report_type == "delivery-status":
            return skip(SkipReason.BOUNCE, "Content-Type: multipart/report; report-type=delivery-status")
        return skip(SkipReason.AUTO_REPLY, f"Content-Type: multipart/report; report-type={report_type}")

    auto_submitted = _header(msg, "Auto-Submitted").split(";")[0].strip().lower()
    if auto_submitted and auto_submitted != "no":
        return skip(SkipReason.AUTO_REPLY, f"Auto-Submitted: {auto_submitted}")
    for name in ("X-Autoreply", "X-Autorespond"):
        if name in msg:
            return skip(SkipReason.AUTO_REPLY, f"{name}: {_header(msg, name).strip()}")
    precedence = _header(msg, "Precedence").strip().lower()
    if precedence in _AUTO_PRECEDENCE:
        return skip(SkipReason.AUTO_REPLY, f"Precedence: {precedence}")
    # Outlook sets X-Auto-Response-Suppress on ordinary mail too, so alone it proves nothing.
    suppress = {token.strip().lower() for token in _header(msg, "X-Auto-Response-Suppress").split(",")}
    if suppress & {"all", "oof"} and any(words in subject.lower() for words in _OUT_OF_OFFICE):
        return skip(SkipReason.AUTO_REPLY, f"X-Auto-Response-Suppress with out-of-office subject {subject!r}")
    return None


def _header(msg: Message, name: str) -> str:
    value = msg.get(name)
    return "" if value is None else _clean(str(value))


def _addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    """(display name, lower-cased addr-spec) pairs; lenient where the strict parser gives up."""
    found = [(a.display_name, a.addr_spec) for a in getattr(msg.get(name), "addresses", ())]
    if not any("@" in address for _, address in found):
        found = getaddresses([_header(msg, name)])
    return [(_clean(n).strip(), _clean(a).strip().lower()) for n, a in found if a.strip()]


def _message_ids(value: str) -> list[str]:
    tokens = re.findall(r"<([^<>]*)>", value) if "<" in value else value.replace(",", " ").split()
    ids = ("<" + "".join(token.split()).strip("<>") + ">" for token in tokens)
    return list(dict.fromkeys(i for i in ids if i != "<>"))


def _date(msg: Message) -> datetime | None:
    try:
        value = getattr(msg.get("Date"), "datetime", None) or parsedate_to_datetime(_header(msg, "Date"))
    except Exception:
        return None
    # A naive datetime means "-0000": the sender did not know its zone. UTC is the honest guess.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# --- body ----------------------------------------------------------------------------------------


@dataclass
class _Body:
    segments: list[tuple[str, bool]] = field(default_factory=list)  # (text, part of forwarded history)
    attachments: list[Attachment] = field(default_factory=list)
    charset_problems: bool = False
    plain: bool = False  # some text came from a text/plain part

    def absorb(self, other: _Body) -> None:
        self.segments += other.segments
        self.attachments += other.attachments
        self.charset_problems |= other.charset_problems
        self.plain |= other.plain


_MAX_DEPTH = 20  # deeper nesting is only ever an attack on our recursion limit


def _walk(part: Message, body: _Body, *, forwarded: bool, depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        return
    ctype = part.get_content_type()
    # is_multipart() is True exactly when the payload is the list of sub-messages.
    children = cast("list[Message]", part.get_payload()) if part.is_multipart() else None
    if ctype in ("message/rfc822", "message/global") and children:
        inner = children[0]
        heading = "\n".join(f"{h}: {_header(inner, h)}" for h in ("From", "Date", "Subject") if h in inner)
        body.segments.append(("---------- Forwarded message ----------\n" + heading, True))
        _walk(inner, body, forwarded=True, depth=depth + 1)
    elif ctype == "multipart/alternative" and children:
        options = []
        for child in children:
            options.append(_Body())
            _walk(child, options[-1], forwarded=forwarded, depth=depth + 1)
        with_text = [o for o in options if any(text.strip() for text, _ in o.segments)]
        body.absorb(next((o for o in with_text if o.plain), None) or (with_text or options)[-1])
    elif children is not None:
        for child in children:
            _walk(child, body, forwarded=forwarded, depth=depth + 1)
    else:
        try:
            _leaf(part, ctype, body, forwarded)
        except Exception:  # one unreadable part must not cost us the rest of the message
            body.charset_problems = True


def _leaf(part: Message, ctype: str, body: _Body, forwarded: bool) -> None:
    # Only leaves get here, and a leaf's decoded payload is bytes (None when it has none).
    payload = cast("bytes | None", part.get_payload(decode=True)) or b""
    if ctype not in ("text/plain", "text/html") or part.get_content_disposition() == "attachment":
        # Non-text parts count even without a filename: a pasted screenshot is still something sent.
        filename = _clean(part.get_filename() or "") or None
        body.attachments.append(Attachment(filename=filename, content_type=_clean(ctype), size=len(payload)))
        return
    text, problems = _decode(payload, part.get_content_charset())
    broken_transfer = (errors.InvalidBase64CharactersDefect, errors.InvalidBase64LengthDefect)
    body.charset_problems |= problems or any(isinstance(d, broken_transfer) for d in part.defects)
    body.plain |= ctype == "text/plain"
    body.segments.append((_html_to_text(text) if ctype == "text/html" else text, forwarded))


# Labels Python does not know, and labels that real mailers use for a larger superset (the same
# choices browsers make): text labelled Latin-1 is in practice windows-1252, and so on.
_ALIASES = {"x-sjis": "cp932", "windows-874": "cp874", "iso-8859-8-i": "iso-8859-8"}
_SUPERSETS = {
    "ascii": "utf-8", "iso8859-1": "cp1252", "iso8859-9": "cp1254", "tis-620": "cp874",
    "shift_jis": "cp932", "gb2312": "gb18030", "gbk": "gb18030", "euc_kr": "cp949",
}  # fmt: skip


def _decode(payload: bytes, declared: str | None) -> tuple[str, bool]:
    """Text and whether it had to be decoded with replacement characters."""
    label = declared or "utf-8"
    try:
        info = codecs.lookup(_ALIASES.get(label, label))
        codec = _SUPERSETS.get(info.name, info.name) if info._is_text_encoding else "utf-8"
    except (LookupError, ValueError):
        codec = "utf-8"  # unknown label: UTF-8 is the likeliest truth, and replacement marks the rest
    try:
        return _clean(payload.decode(codec)), False
    except UnicodeError:
        return _clean(payload.decode(codec, "replace")), True


_CONTROL = dict.fromkeys([*range(0, 9), 11, 12, *range(14, 32), 0x7F, 0xFEFF])  # NUL breaks PostgreSQL


def _clean(text: str) -> str:
    """Valid Unicode a database accepts: the parser keeps undecodable header bytes as lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = text.encode("utf-8", "replace")
        text = raw.decode("utf-8", "replace")
    return text.translate(_CONTROL)


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --- HTML ----------------------------------------------------------------------------------------

_DROPPED = {"script", "style", "head", "title", "template"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_TABLE_PARTS = {"table", "thead", "tbody", "tfoot", "tr", "td", "th", "caption"}
# A table is data when it says so (header cells, a caption, a head) or is a regular grid (every row as
# wide) of more than this many cells; otherwise it lays the message out (Outlook and mail builders put
# whole emails in tables, rows of one cell between rows of several) and is read as lines of text, one
# per row.
_DATA_CELLS = 10


@dataclass
class _Table:
    """One open <table>: its shape so far, and where its own tags sit in the re-emitted HTML."""

    tags: list[int] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)  # cells per row, colspans counted
    marked: bool = False  # header cells, a caption or a head: a data table
    layout: bool = False  # role="presentation", or a table inside it: a layout table


class _Sanitiser(HTMLParser):
    """Re-emits the HTML without invisible content: scripts, styles, <head>, hidden elements, pixels."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.html: list[str] = []
        self.text: list[str] = []  # plain fallback if html2text fails
        self._skipping: str | None = None
        self._depth = 0
        self._tables: list[_Table] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skipping:
            if self._skipping == "head" and tag == "body":  # an unclosed <head> ends where <body> starts
                self._skipping = None
            else:
                self._depth += tag == self._skipping
                return
        if _invisible(tag, attrs):
            if tag not in _VOID:
                self._skipping, self._depth = tag, 1
            return
        if tag in _TABLE_PARTS:
            self._table_start(tag, attrs)
        self.html.append(self.get_starttag_text() or "")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self._skipping and not _invisible(tag, attrs):
            self.html.append(self.get_starttag_text() or "")

    def handle_endtag(self, tag: str) -> None:
        if self._skipping:
            self._depth -= tag == self._skipping
            self._skipping = self._skipping if self._depth > 0 else None
            return
        if tag in _TABLE_PARTS and self._tables:
            self._tables[-1].tags.append(len(self.html))
        self.html.append(f"</{tag}>")
        if tag == "table" and self._tables:
            self._table_end(self._tables.pop())

    def close(self) -> None:
        super().close()
        while self._tables:  # unclosed tables are judged as they stand
            self._table_end(self._tables.pop())

    def _table_start(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            if self._tables:
                self._tables[-1].layout = True  # tables inside a table: it is the page's grid
            role = dict(attrs).get("role") or ""
            self._tables.append(_Table(layout=role.strip().lower() in ("presentation", "none")))
        elif not self._tables:
            return  # a stray cell outside any table: left as it is
        table = self._tables[-1]
        table.tags.append(len(self.html))
        if tag in ("th", "caption", "thead"):
            table.marked = True
        if tag == "tr":
            table.widths.append(0)
        elif tag in ("td", "th"):
            span = dict(attrs).get("colspan") or "1"
            if not table.widths:
                table.widths.append(0)  # a cell before any <tr>: browsers open the row
            table.widths[-1] += int(span) if span.isdigit() and 0 < int(span) < 100 else 1

    def _table_end(self, table: _Table) -> None:
        widths = [w for w in table.widths if w]
        grid = len(widths) > 1 and len(set(widths)) == 1 and widths[0] > 1 and len(widths) * widths[0] > _DATA_CELLS
        data = not table.layout and (table.marked or grid)
        if data:
            return
        # A layout table's rows become blocks and its cells words of a line, so a sentence split across
        # cells reads as one.
        for index in table.tags:
            tag = self.html[index]
            name = re.match(r"</?\s*([a-zA-Z]+)", tag)
            part = name[1].lower() if name else ""
            closing = tag.startswith("</")
            if part in ("tr", "caption"):
                self.html[index] = "</div>" if closing else "<div>"
            elif part in ("td", "th"):
                self.html[index] = "</span> " if closing else "<span>"
            else:
                self.html[index] = ""

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.html.append(escape(data, quote=False))
            self.text.append(data)


def _invisible(tag: str, attrs: list[tuple[str, str | None]]) -> bool:
    values = {name: (value or "").strip().lower() for name, value in attrs}
    style = dict(item.split(":", 1) for item in values.get("style", "").replace(" ", "").split(";") if ":" in item)
    if tag in _DROPPED or "hidden" in values or style.get("visibility") == "hidden":
        return True
    if style.get("display", "").startswith("none"):
        return True
    sizes = (values.get("width"), values.get("height"), style.get("width"), style.get("height"))
    return tag == "img" and any(size and size.removesuffix("px") in ("0", "1") for size in sizes)


def _html_to_text(html: str) -> str:
    sanitiser = _Sanitiser()
    try:
        sanitiser.feed(html)
        sanitiser.close()
        converter = html2text.HTML2Text()
        converter.body_width = 0  # wrapping would put newlines inside sentences
        converter.ignore_images = converter.ignore_emphasis = True
        converter.ignore_links = True  # keep the link text; redirect/tracking URLs are noise
        converter.unicode_snob = True
        markdown = converter.handle("".join(sanitiser.html))
    except Exception:  # html2text is not total on hostile markup; the visible text is enough
        return " ".join(sanitiser.text)
    # html2text escapes line starts that would read as Markdown lists; our readers are not renderers.
    text = re.sub(r"^(\s*\d*)\\([-+.])", r"\1\2", markdown, flags=re.MULTILINE)
    # A data table's "---|---" rule under its header helps a renderer, not a reader.
    return re.sub(r"^[ \t]*\|?(?:[ \t]*:?-{3,}:?[ \t]*\|)+[ \t]*:?-{3,}:?[ \t]*\|?[ \t]*\n?", "", text, flags=re.MULTILINE)


# --- quoted history and signatures ---------------------------------------------------------------

# The library's header regexes backtrack quadratically on long lines, so they see 20,000 characters
# in lines of at most 1,000. New text is the top of a message, and full_text keeps everything.
_REPLY_SCAN_LIMIT = 20_000
_LANGUAGES = ("en", "de", "fr", "es", "it", "nl")
_DEVICE = ("sent from", "get outlook", "von meinem", "envoyé de", "enviado desde", "inviato da", "verzonden met")


def _latest_reply(text: str) -> str:
    """The new part of a reply: before the first quoted header, without '>' lines or signature."""
    lines = text[:_REPLY_SCAN_LIMIT].split("\n")
    lines = [short for line in lines for short in (textwrap.wrap(line, 1_000) if len(line) > 1_000 else [line])]
    # keep_hyphen_lists: otherwise a "- step one" list is taken for a signature and cut with all below it
    message = ReplyMessage(text="\n".join(lines), languages=list(_LANGUAGES), keep_hyphen_lists=True).read()
    first = message.replies[0] if message.replies else None
    if first is None or first.headers:  # the message opens with quoted history: nothing new
        return ""
    new, position = first.content, 0
    while match := message.SIGNATURE_REGEX.search(new, position):
        if _is_signature(match.group().strip()):
            new = new[: match.start()]
            break
        signoff_start = match.end() - len(match.group().lstrip())
        position = new.find("\n", signoff_start)
        if position < 0:
            break
    kept = [line for line in new.split("\n") if not line.startswith(">")]
    while kept and (kept[-1].startswith("-----") or kept[-1].lower().endswith("forwarded message:")):
        kept.pop()  # the separator of an inline forward whose headers the library split off
    return _tidy("\n".join(kept))


def _is_signature(block: str) -> bool:
    """The library takes any line starting 'Thanks,' for a sign-off, even 'Thanks, but it fails'.

    Accept its cut for a delimiter or a device line, or a short sign-off line with a few lines after.
    """
    lines = [line for line in block.split("\n") if line.strip()] or [""]
    first = lines[0].lstrip("> ").lower()
    if first.startswith(("--", "__")) or first.startswith(_DEVICE):
        return True
    return len(lines) <= 8 and len(first.split()) <= 4 and not first.endswith((".", "?"))

"""pipelines.intake.email_parse: every email path goes through it, so hostile bytes must never get past it."""

from __future__ import annotations

import base64
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.intake.email_parse import Attachment, ParsedEmail, Skipped, SkipReason, parse_email

DATA = Path(__file__).parent / "data" / "email"
SAMPLES = Path(__file__).parent.parent / "samples" / "inbox"

HEAD = (
    b"From: Jane Doe <Jane.Doe@Example.com>\r\n"
    b"To: support@demo-bank.example\r\n"
    b"Subject: Card question\r\n"
    b"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <m1@mail.example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
)


def mail(body: bytes, *, headers: bytes = b"", head: bytes = HEAD, ctype: bytes | None = None) -> bytes:
    """A message from hand-written bytes; `ctype` is the whole Content-Type line's value."""
    content_type = b"Content-Type: " + ctype + b"\r\n" if ctype else b""
    return head + headers + content_type + b"\r\n" + body


def parsed(raw: bytes, **kwargs: object) -> ParsedEmail:
    result = parse_email(raw, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, ParsedEmail), result
    return result


def skipped(raw: bytes, **kwargs: object) -> Skipped:
    result = parse_email(raw, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, Skipped), result
    return result


# --- structure -----------------------------------------------------------------------------------


def test_plain_message_fields():
    email = parsed(mail(b"My card has not arrived yet.\r\n", ctype=b"text/plain; charset=utf-8"))
    assert email.text == email.full_text == "My card has not arrived yet."
    assert email.from_address == "jane.doe@example.com"
    assert email.from_name == "Jane Doe"
    assert email.to_addresses == ["support@demo-bank.example"]
    assert email.subject == "Card question"
    assert email.message_id == "<m1@mail.example.com>"
    assert email.in_reply_to is None and email.references == []
    assert email.date == datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    assert email.attachments == [] and email.charset_problems is False


def test_models_are_frozen():
    email = parsed(mail(b"hello\r\n"))
    with pytest.raises(pydantic.ValidationError):
        email.text = "changed"  # type: ignore[misc]
    assert SkipReason.AUTO_REPLY == "auto_reply"


def test_multipart_alternative_picks_the_plain_part():
    body = (
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlain: my top-up is pending.\r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>HTML: my top-up is pending.</p>\r\n"
        b"--b--\r\n"
    )
    email = parsed(mail(body, ctype=b'multipart/alternative; boundary="b"'))
    assert email.text == "Plain: my top-up is pending."
    assert "HTML" not in email.full_text


def test_multipart_alternative_with_empty_plain_part_uses_html():
    body = (
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Only the <b>HTML</b> says something.</p>\r\n"
        b"--b--\r\n"
    )
    assert parsed(mail(body, ctype=b"multipart/alternative; boundary=b")).text == "Only the HTML says something."


def test_html_only_drops_scripts_styles_head_hidden_text_and_tracking_pixels():
    html = b"""<html><head><title>Newsletter title</title><meta charset="utf-8">
<style>.x { color: red } body { font-family: TrackingFont }</style></head>
<body><div style="display: none; max-height: 0">Hidden preheader text</div>
<p>Hello, my <strong>card payment</strong> was declined at
<a href="https://click.track.example/r?u=abc">Shop &amp; Co</a>.</p>
<script type="text/javascript">var secret = "alert-script-text";</script>
<ol><li>Opened the app</li><li>Tapped pay</li></ol>
<img src="https://pixel.track.example/open.gif" width="1" height="1" alt="">
<img src="https://pixel2.track.example/o.png" style="width:1px;height:1px">
<img src="https://cdn.example/logo.png" width="120" height="40" alt="Logo">
<span hidden>also hidden</span>
<p>Error E-4012 &ndash; please help.</p></body></html>"""
    email = parsed(mail(html, ctype=b"text/html; charset=utf-8"))
    for absent in ("alert-script-text", "color: red", "Newsletter title", "Hidden preheader", "also hidden",
                   "pixel.track.example", "pixel2", "click.track.example", "logo.png", "Logo", "\\."):  # fmt: skip
        assert absent not in email.full_text, absent
    assert "Hello, my card payment was declined at Shop & Co." in email.text
    assert "1. Opened the app" in email.text and "2. Tapped pay" in email.text
    assert "Error E-4012 – please help." in email.text


def test_html_with_unclosed_head_and_broken_markup_still_yields_the_body():
    html = b"<html><head><style>p{}</style><body><p>Card blocked<div><td>after 3 PIN tries</p></b></i>"
    email = parsed(mail(html, ctype=b"text/html"))
    assert "Card blocked" in email.text and "after 3 PIN tries" in email.text
    assert "p{}" not in email.text


def test_base64_body():
    payload = base64.encodebytes("Mein Top-up hängt seit gestern.".encode())
    email = parsed(mail(payload, ctype=b"text/plain; charset=utf-8", headers=b"Content-Transfer-Encoding: base64\r\n"))
    assert email.text == "Mein Top-up hängt seit gestern."
    assert email.charset_problems is False


def test_quoted_printable_body_with_soft_line_breaks():
    payload = b"J'ai =C3=A9t=C3=A9 d=C3=A9bit=C3=A9 deux fois pour le m=C3=AAme achat, merc=\r\ni de v=C3=A9rifier.\r\n"
    email = parsed(
        mail(payload, ctype=b"text/plain; charset=UTF-8", headers=b"Content-Transfer-Encoding: quoted-printable\r\n")
    )
    assert email.text == "J'ai été débité deux fois pour le même achat, merci de vérifier."


@pytest.mark.parametrize(
    ("charset", "text"),
    [
        ("iso-8859-1", "Grüße aus Köln: der Betrag ist falsch."),
        ("windows-1252", "The “exchange rate” was wrong – I paid €12.50 more."),
        ("shift_jis", "カードがまだ届きません。"),
        ("koi8-r", "Моя карта заблокирована."),
    ],
)
def test_non_utf8_charsets_are_decoded(charset: str, text: str):
    email = parsed(mail(text.encode(charset) + b"\r\n", ctype=f"text/plain; charset={charset}".encode()))
    assert email.text == text
    assert email.charset_problems is False


def test_latin1_label_on_windows_1252_bytes_is_read_as_windows_1252():
    # Mailers label cp1252 text "iso-8859-1"; read strictly, 0x80 would be an invisible C1 control.
    email = parsed(mail(b"Fee of \x80 5 charged\r\n", ctype=b"text/plain; charset=iso-8859-1"))
    assert email.text == "Fee of € 5 charged"


def test_lying_charset_is_decoded_with_replacement_and_flagged():
    email = parsed(mail(b"Caf\xe9 payment declined, na\xefve me.\r\n", ctype=b"text/plain; charset=utf-8"))
    assert email.text == "Caf\ufffd payment declined, na\ufffdve me."
    assert email.charset_problems is True


def test_unknown_charset_with_8bit_bytes_is_flagged():
    email = parsed(mail(b"Refund not showing \xff\xfe yet\r\n", ctype=b'text/plain; charset="x-unknown"'))
    assert email.text == "Refund not showing \ufffd\ufffd yet"
    assert email.charset_problems is True


def test_unknown_charset_on_clean_text_decodes_as_utf8_without_flag():
    email = parsed(mail("Überweisung fehlt\r\n".encode(), ctype=b"text/plain; charset=x-made-up"))
    assert email.text == "Überweisung fehlt"
    assert email.charset_problems is False


def test_missing_charset_with_utf8_bytes():
    email = parsed(mail("Karte nicht erhalten – bitte prüfen\r\n".encode(), ctype=b"text/plain"))
    assert email.text == "Karte nicht erhalten – bitte prüfen"
    assert email.charset_problems is False


def test_binary_codec_label_is_not_used_to_decode_text():
    email = parsed(mail(b"plain words\r\n", ctype=b"text/plain; charset=zlib"))
    assert email.text == "plain words"


def test_broken_base64_never_raises_and_is_flagged():
    email = parsed(
        mail(b"SGVsbG8*gd29y!bGQ=\r\n=\r\n", ctype=b"text/plain; charset=utf-8",
             headers=b"Content-Transfer-Encoding: base64\r\n")  # fmt: skip
    )
    assert email.charset_problems is True
    assert isinstance(email.full_text, str)


def test_broken_quoted_printable_never_raises():
    email = parsed(
        mail(b"Amount =ZZ 10=E2=82=AC and =\r\n", ctype=b"text/plain; charset=utf-8",
             headers=b"Content-Transfer-Encoding: quoted-printable\r\n")  # fmt: skip
    )
    assert email.text.startswith("Amount =ZZ 10€ and")


def test_control_characters_and_nul_are_removed():
    email = parsed(mail(b"PIN\x00 blocked\x07 \xef\xbb\xbfagain\r\n", ctype=b"text/plain; charset=utf-8"))
    assert email.text == "PIN blocked again"


# --- headers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        (b"=?UTF-8?B?S2FydGUgbmljaHQgZXJoYWx0ZW4g4oCTIGRyaW5nZW5k?=", "Karte nicht erhalten – dringend"),
        (b"=?ISO-8859-1?Q?Probl=E8me_de_carte_bancaire?=", "Problème de carte bancaire"),
        (b"=?Shift_JIS?B?g0qBW4NogqqTzYKpgsiCog==?=", "カードが届かない"),
        (b"=?utf-8?q?Wrong?=\r\n =?utf-8?q?_rate?=   charged\r\n\tagain", "Wrong rate charged again"),
        ("Überweisung fehlt".encode(), "Überweisung fehlt"),  # raw 8-bit UTF-8, no encoded-word
    ],
)
def test_rfc2047_subjects(subject: bytes, expected: str):
    head = HEAD.replace(b"Subject: Card question", b"Subject: " + subject)
    assert parsed(mail(b"hi\r\n", head=head)).subject == expected


@pytest.mark.parametrize(
    "subject", [b"=?utf-8?B?broken", b"=?utf-8?Q?caf=E9?=", b"=?x-unknown?Q?caf=E9?=", b"=?utf-8?B?!!!?=", b"\xff\xfe"]
)
def test_broken_encoded_words_do_not_crash(subject: bytes):
    head = HEAD.replace(b"Subject: Card question", b"Subject: " + subject)
    email = parsed(mail(b"hi\r\n", head=head))
    email.model_dump_json()  # no lone surrogates survive to the database or the logs
    assert email.text == "hi"


@pytest.mark.parametrize(
    ("header", "name"),
    [
        (b"From: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <JUERGEN@example.net>", "Jürgen Müller"),
        (b"From: =?iso-8859-1?Q?Fran=E7ois_L=E9v=EAque?= <francois@example.net>", "François Lévêque"),
        (b'From: "Doe, Jane" <jane@example.net>', "Doe, Jane"),
        (b"From: jane@example.net", None),
    ],
)
def test_from_display_name_is_decoded(header: bytes, name: str | None):
    head = HEAD.replace(b"From: Jane Doe <Jane.Doe@Example.com>", header)
    email = parsed(mail(b"hi\r\n", head=head))
    assert email.from_name == name
    assert email.from_address.endswith("@example.net") and email.from_address == email.from_address.lower()


def test_message_ids_are_normalised():
    head = HEAD.replace(b"Message-ID: <m1@mail.example.com>", b"Message-ID:   m1@mail.example.com  ")
    headers = (
        b"In-Reply-To: <p2@mail.example.com> (Jane's message of Mon)\r\n"
        b"References: <r1@mail.example.com>\r\n <r2@mail.example.com>,<p2@mail.example.com>\r\n"
        b"Cc: other@example.org\r\n"
    )
    email = parsed(mail(b"hi\r\n", head=head, headers=headers))
    assert email.message_id == "<m1@mail.example.com>"
    assert email.in_reply_to == "<p2@mail.example.com>"
    assert email.references == ["<r1@mail.example.com>", "<r2@mail.example.com>", "<p2@mail.example.com>"]


def test_references_without_brackets_split_on_whitespace():
    email = parsed(mail(b"hi\r\n", headers=b"References: a@x  b@y\r\n"))
    assert email.references == ["<a@x>", "<b@y>"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"Tue, 03 Nov 2026 09:12:00 +0100", datetime(2026, 11, 3, 8, 12, tzinfo=UTC)),
        (b"Tue, 03 Nov 2026 09:12:00 -0000", datetime(2026, 11, 3, 9, 12, tzinfo=UTC)),
        (b"yesterday-ish", None),
    ],
)
def test_dates_are_timezone_aware(value: bytes, expected: datetime | None):
    head = HEAD.replace(b"Mon, 02 Nov 2026 10:00:00 +0000", value)
    date = parsed(mail(b"hi\r\n", head=head)).date
    assert date == expected
    assert date is None or date.utcoffset() is not None


def test_malformed_headers_do_not_crash():
    head = (
        b"From: Jane <jane@example.com>\r\n"
        b"To: <<<@@@>>>, ,,\r\n"
        b"Subject:\r\n"
        b"Date: 99 Foo 12345 99:99:99 +9999\r\n"
        b"Message-ID: <>\r\n"
        b"this line is not a header at all\r\n"
        b"Content-Type: text/plain; charset=\"utf-8; format=flowed\r\n"
    )
    email = parsed(head + b"\r\nstill readable\r\n")
    assert email.subject == "" and email.message_id is None and email.date is None
    assert email.from_address == "jane@example.com"


# --- attachments ---------------------------------------------------------------------------------

PDF = b"%PDF-1.4 fake statement \x00\x01\x02" * 10


def test_attachments_are_metadata_only():
    body = (
        b"--m\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nStatement attached, see line 3.\r\n"
        b"--m\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''Kontoauszug%20M%C3%A4rz.pdf\r\n\r\n"
        + base64.encodebytes(PDF)
        + b"--m\r\nContent-Type: application/octet-stream; name=\"=?utf-8?B?w6lsw6h2ZS5iaW4=?=\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(b"\x00" * 7)
        + b"--m\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: attachment; filename=app.log\r\n\r\n"
        b"SECRET LOG LINE should not be text\r\n"
        b"--m\r\nContent-Type: image/png\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(b"\x89PNG\r\n\x1a\n")
        + b"--m--\r\n"
    )
    email = parsed(mail(body, ctype=b"multipart/mixed; boundary=m"))
    assert email.text == "Statement attached, see line 3."
    assert "SECRET LOG LINE" not in email.full_text and "PDF" not in email.full_text
    assert email.attachments == [
        Attachment(filename="Kontoauszug März.pdf", content_type="application/pdf", size=len(PDF)),
        Attachment(filename="élève.bin", content_type="application/octet-stream", size=7),
        # the CRLF before a boundary belongs to the boundary, not to the payload
        Attachment(filename="app.log", content_type="text/plain", size=len(b"SECRET LOG LINE should not be text")),
        Attachment(filename=None, content_type="image/png", size=8),
    ]


def test_mixed_concatenates_inline_text_parts():
    body = (
        b"--m\r\nContent-Type: text/plain\r\n\r\nFirst part.\r\n"
        b"--m\r\nContent-Type: image/jpeg; name=photo.jpg\r\n\r\nJPEGDATA\r\n"
        b"--m\r\nContent-Type: text/html\r\n\r\n<p>Second part.</p>\r\n"
        b"--m--\r\n"
    )
    email = parsed(mail(body, ctype=b"multipart/mixed; boundary=m"))
    assert email.text == "First part.\n\nSecond part."
    assert [a.filename for a in email.attachments] == ["photo.jpg"]


def test_attachment_only_message_is_not_empty():
    body = (
        b"--m\r\nContent-Type: image/png; name=screenshot.png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(b"\x89PNG\r\n\x1a\n1234")
        + b"--m--\r\n"
    )
    email = parsed(mail(body, ctype=b"multipart/mixed; boundary=m"))
    assert email.text == "" and email.attachments[0].size == 12


def test_forwarded_message_is_history_not_new_text():
    inner = (
        b"From: Shop <noreply@shop.example.org>\r\nSubject: Your refund\r\nDate: Sun, 01 Nov 2026 08:00:00 +0000\r\n"
        b"Content-Type: text/plain\r\n\r\nWe refunded 49.99 EUR to your card.\r\n"
    )
    body = (
        b"--m\r\nContent-Type: text/plain\r\n\r\nThe shop says they refunded me, but I see nothing.\r\n"
        b"--m\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=fwd.eml\r\n\r\n"
        + inner
        + b"--m--\r\n"
    )
    email = parsed(mail(body, ctype=b"multipart/mixed; boundary=m"))
    assert email.text == "The shop says they refunded me, but I see nothing."
    assert "We refunded 49.99 EUR to your card." in email.full_text
    assert "Subject: Your refund" in email.full_text


def test_only_a_forwarded_message_falls_back_to_full_text():
    inner = b"From: Shop <noreply@shop.example.org>\r\nContent-Type: text/plain\r\n\r\nRefund issued.\r\n"
    body = b"--m\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"--m--\r\n"
    email = parsed(mail(body, ctype=b"multipart/mixed; boundary=m"))
    assert "Refund issued." in email.text and email.text == email.full_text


def test_absurd_nesting_does_not_hit_the_recursion_limit():
    depth = 300
    body = b"".join(b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1) for i in range(depth))
    body += b"--b%d\r\nContent-Type: text/plain\r\n\r\ndeep\r\n" % depth
    result = parse_email(mail(body, ctype=b"multipart/mixed; boundary=b0"))
    assert isinstance(result, ParsedEmail | Skipped)


# --- quoted history and signatures ---------------------------------------------------------------


def test_gmail_reply_in_a_thread():
    email = parsed((DATA / "gmail-reply.eml").read_bytes())
    assert email.message_id == "<CAB1x7q0second@mail.gmail.com>"
    assert email.in_reply_to == "<case-4711.reply-1@demo-bank.example>"
    assert email.references == ["<CAB1x7q0first@mail.gmail.com>", "<case-4711.reply-1@demo-bank.example>"]
    assert email.from_name == "María López" and email.from_address == "maria.lopez@example.com"
    assert email.text == (
        "Hi,\n\nthe transfer still hasn't arrived. My landlord says nothing came in.\nReference on my side: TRX-88213."
    )
    for history in ("wrote:", "SEPA transfers usually arrive", "I sent 850 EUR", "+34 600 000 000", "Thanks,"):
        assert history in email.full_text
        assert history not in email.text


def test_outlook_reply_in_a_thread():
    email = parsed((DATA / "outlook-reply.eml").read_bytes())  # also carries X-Auto-Response-Suppress: All
    assert email.in_reply_to == "<case-2231.reply-1@demo-bank.example>"
    assert email.text.startswith("This is the third time I’m writing. 14 of our corporate cards")
    assert "Monday – this is costing us money." in email.text
    assert "We are looking into" not in email.text and "Sent: Wednesday" not in email.text
    assert "We are looking into the declined payments" in email.full_text


def plain(text: str) -> ParsedEmail:
    return parsed(mail(text.replace("\n", "\r\n").encode(), ctype=b"text/plain; charset=utf-8"))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Please close my account.\n\n-----Original Message-----\nFrom: Support\nSent: Monday\n\nHello",
         "Please close my account."),
        ("My PIN is blocked.\n\n-- \nCarla Rossi\nExample S.p.A.", "My PIN is blocked."),
        ("Top-up pending since yesterday.\n\nSent from my iPhone", "Top-up pending since yesterday."),
        ("Direct debit taken twice.\n\nBest regards,\nTom\n\nOn Mon, 2 Nov 2026, Demo Bank wrote:\n> Hello Tom",
         "Direct debit taken twice."),
        ("Meine Karte ist gesperrt.\n\nMit freundlichen Grüßen\nJürgen\n\n"
         "Am 02.11.2026 um 10:00 schrieb Support <support@demo-bank.example>:\n> Hallo",
         "Meine Karte ist gesperrt."),
        ("Le retrait au DAB était de 100 € mais 200 € débités.\n\n"
         "Le lun. 2 nov. 2026 à 10:00, Support <support@demo-bank.example> a écrit :\n> Bonjour",
         "Le retrait au DAB était de 100 € mais 200 € débités."),
        ("> Which card?\nThe one ending 1234.\n> When did it happen?\nYesterday at 5pm.",
         "The one ending 1234.\nYesterday at 5pm."),
    ],
)  # fmt: skip
def test_quoted_history_and_signatures_are_stripped(body: str, expected: str):
    email = plain(body)
    assert email.text == expected
    assert expected.split("\n")[0] in email.full_text


def test_a_line_starting_with_thanks_is_not_mistaken_for_a_signature():
    email = plain("Hi,\nThanks, but that did not help.\nThe app still shows error E-4012.\n\nThanks,\nAnna")
    assert email.text == "Hi,\nThanks, but that did not help.\nThe app still shows error E-4012."


def test_hyphen_lists_are_not_mistaken_for_signatures():
    email = plain("What I did:\n- ordered the card on 1 Nov\n- activated the app\nIt never arrived.")
    assert email.text == "What I did:\n- ordered the card on 1 Nov\n- activated the app\nIt never arrived."


def test_entirely_quoted_message_falls_back_to_full_text():
    email = plain("On Mon, Nov 2, 2026 at 10:00 AM Demo Bank <support@demo-bank.example> wrote:\n> Your card was sent.")
    assert email.text == email.full_text
    assert "Your card was sent." in email.text


def test_inline_forward_keeps_only_the_customers_words():
    email = plain(
        "FYI, this is the shop's refund confirmation.\n\n---------- Forwarded message ---------\n"
        "From: Shop <noreply@shop.example.org>\nDate: Sun, Nov 1, 2026 at 8:00 AM\nSubject: Refund\n"
        "To: <jane.doe@example.com>\n\nWe refunded 49.99 EUR."
    )
    assert email.text == "FYI, this is the shop's refund confirmation."
    assert "We refunded 49.99 EUR." in email.full_text


def test_forward_without_a_word_of_our_own_falls_back_to_full_text():
    email = plain("Begin forwarded message:\n\nFrom: Shop <noreply@shop.example.org>\nDate: 1 Nov 2026\n\nRefunded.")
    assert email.text == email.full_text and "Refunded." in email.text


def test_huge_adversarial_body_is_parsed_quickly_and_kept_in_full():
    body = ("On " + "a b " * 5_000 + "\n") * 40  # long "On ..." lines make the reply regexes backtrack
    started = time.monotonic()
    email = plain(body + "\nthe end")
    assert time.monotonic() - started < 10
    assert email.full_text.endswith("the end") and len(email.full_text) > 800_000
    assert 0 < len(email.text) <= 20_000


def test_html_reply_quote_is_stripped():
    html = (
        b'<div dir="ltr">The refund is still not showing.</div><div class="gmail_quote">'
        b"<div>On Mon, Nov 2, 2026 at 10:00 AM Demo Bank &lt;support@demo-bank.example&gt; wrote:</div>"
        b"<blockquote>Refunds take 5 days.</blockquote></div>"
    )
    email = parsed(mail(html, ctype=b"text/html; charset=utf-8"))
    assert email.text == "The refund is still not showing."
    assert "Refunds take 5 days." in email.full_text


# --- skipped -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        (b"Auto-Submitted: auto-replied\r\n", "Auto-Submitted: auto-replied"),
        (b"Auto-Submitted: auto-generated; owner-email=x@example.com\r\n", "Auto-Submitted: auto-generated"),
        (b"X-Autoreply: yes\r\n", "X-Autoreply: yes"),
        (b"X-Autorespond: Out of office\r\n", "X-Autorespond"),
        (b"Precedence: bulk\r\n", "Precedence: bulk"),
        (b"Precedence: Junk\r\n", "Precedence: junk"),
        (b"Precedence: auto_reply\r\n", "Precedence: auto_reply"),
        (b"Precedence: list\r\n", "Precedence: list"),
        (b"X-Auto-Response-Suppress: All\r\nSubject: Automatic reply: Card question\r\n", "X-Auto-Response-Suppress"),
        (b"X-Auto-Response-Suppress: DR, RN, NRN, OOF\r\nSubject: Out of Office: back on 9 Nov\r\n", "out-of-office"),
        (b"X-Auto-Response-Suppress: All\r\nSubject: Abwesenheitsnotiz\r\n", "Abwesenheitsnotiz"),
    ],
)
def test_auto_replies_are_skipped(headers: bytes, detail: str):
    head = HEAD.replace(b"Subject: Card question\r\n", b"") if b"Subject" in headers else HEAD
    result = skipped(mail(b"I am out of the office until Monday.\r\n", head=head, headers=headers))
    assert result.reason is SkipReason.AUTO_REPLY
    assert detail in result.detail


@pytest.mark.parametrize(
    "headers", [b"Auto-Submitted: no\r\n", b"X-Auto-Response-Suppress: All\r\n", b"Precedence: first-class\r\n"]
)
def test_ordinary_mail_with_harmless_auto_headers_is_kept(headers: bytes):
    assert parsed(mail(b"My card was swallowed by the ATM.\r\n", headers=headers)).text.startswith("My card")


@pytest.mark.parametrize(
    "sender", [b"MAILER-DAEMON@mx.example.net", b"Mail Delivery System <Mailer-Daemon@mx.example.net>",
               b"postmaster@example.org"]
)  # fmt: skip
def test_bounces_from_mailer_daemon_or_postmaster(sender: bytes):
    head = HEAD.replace(b"Jane Doe <Jane.Doe@Example.com>", sender)
    result = skipped(mail(b"Delivery to the following recipient failed permanently.\r\n", head=head))
    assert result.reason is SkipReason.BOUNCE


def test_multipart_report_delivery_status_is_a_bounce_even_with_auto_submitted():
    body = (
        b"--r\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        b"--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        b"Final-Recipient: rfc822; nobody@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"--r--\r\n"
    )
    head = HEAD.replace(b"Jane Doe <Jane.Doe@Example.com>", b"Mail System <bounces@mx.example.net>")
    result = skipped(
        mail(body, head=head, headers=b"Auto-Submitted: auto-replied\r\n",
             ctype=b'multipart/report; report-type="delivery-status"; boundary="r"')  # fmt: skip
    )
    assert result.reason is SkipReason.BOUNCE
    assert "delivery-status" in result.detail


def test_read_receipts_are_auto_replies():
    body = b"--r\r\nContent-Type: text/plain\r\n\r\nYour message was read.\r\n--r--\r\n"
    result = skipped(mail(body, ctype=b"multipart/report; report-type=disposition-notification; boundary=r"))
    assert result.reason is SkipReason.AUTO_REPLY


def test_own_mail_is_skipped_case_insensitively():
    head = HEAD.replace(b"Jane Doe <Jane.Doe@Example.com>", b"Demo Bank <Support@Demo-Bank.example>")
    raw = mail(b"Hello, your card is on the way.\r\n", head=head)
    assert skipped(raw, own_addresses={"support@demo-bank.example"}).reason is SkipReason.OWN_MAIL
    assert skipped(raw, own_addresses="SUPPORT@demo-bank.example").reason is SkipReason.OWN_MAIL
    assert parsed(raw, own_addresses=["other@demo-bank.example"]).from_address == "support@demo-bank.example"


@pytest.mark.parametrize(
    "head",
    [
        HEAD.replace(b"From: Jane Doe <Jane.Doe@Example.com>\r\n", b""),
        HEAD.replace(b"Jane Doe <Jane.Doe@Example.com>", b"undisclosed-recipients:;"),
        HEAD.replace(b"Jane Doe <Jane.Doe@Example.com>", b"Jane Doe"),
    ],
)
def test_no_sender(head: bytes):
    result = skipped(mail(b"Where is my money?\r\n", head=head))
    assert result.reason is SkipReason.NO_SENDER


@pytest.mark.parametrize(
    "raw",
    [
        mail(b""),
        mail(b"   \r\n\r\n", ctype=b"text/plain"),
        mail(b"<html><head><style>x</style></head><body><img src=p width=1 height=1></body>", ctype=b"text/html"),
    ],
)
def test_empty_messages(raw: bytes):
    assert skipped(raw).reason is SkipReason.EMPTY


# --- robustness ----------------------------------------------------------------------------------


def test_random_mutations_never_raise():
    seed = (DATA / "gmail-reply.eml").read_bytes()
    rng = random.Random(20261102)
    for _ in range(200):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 40)):
            position = rng.randrange(len(data))
            action = rng.random()
            if action < 0.4:
                data[position] = rng.randrange(256)
            elif action < 0.7:
                del data[position : position + rng.randint(1, 30)]
            else:
                data[position:position] = rng.choice([b"\r\n", b"=", b"?=", b"=?", b"<", b">", b"--", b"\x00", b"\xff"])
        result = parse_email(bytes(data), own_addresses={"support@demo-bank.example"})
        assert isinstance(result, ParsedEmail | Skipped)
        result.model_dump_json()  # every string is valid Unicode


def test_garbage_input_never_raises():
    for raw in (b"", b"\x00" * 100, b"\xff\xfe" * 50, b"From:\r\n\r\n", b"Content-Type: multipart/mixed\r\n\r\n--"):
        assert isinstance(parse_email(raw), Skipped)


# --- samples -------------------------------------------------------------------------------------


def test_every_sample_parses():
    results = {path.name: parse_email(path.read_bytes(), own_addresses={"support@demo-bank.example"})
               for path in sorted(SAMPLES.glob("*.eml"))}  # fmt: skip
    assert len(results) == 12
    skips = {name: result.reason for name, result in results.items() if isinstance(result, Skipped)}
    assert sorted(skips.values()) == [SkipReason.AUTO_REPLY, SkipReason.BOUNCE]
    emails = {name: result for name, result in results.items() if isinstance(result, ParsedEmail)}
    assert len(emails) == 10
    for name, email in emails.items():
        assert email.text.strip(), name
        assert email.from_address.split("@")[1] in ("example.com", "example.org", "example.net"), name
        assert email.date is not None and email.date.year == 2026 and email.date.month == 11, name
        assert email.message_id and email.message_id.endswith("@mail.example.com>"), name
        assert email.charset_problems is False, name

    replies = [email for email in emails.values() if email.in_reply_to]
    assert len(replies) == 1  # a customer chasing their own unanswered email, quoting it
    reply = replies[0]
    parents = [email for email in emails.values() if email.message_id == reply.in_reply_to]
    assert len(parents) == 1 and reply.references == [parents[0].message_id]
    assert reply.from_address == parents[0].from_address
    quoted = [line for line in parents[0].text.splitlines() if len(line) > 20]
    assert all(line in reply.full_text and line not in reply.text for line in quoted)
    first_mails = [email.from_address for email in emails.values() if email is not reply]
    assert len(set(first_mails)) == len(first_mails)

    with_attachment = [email for email in emails.values() if email.attachments]
    assert [a.content_type for e in with_attachment for a in e.attachments] == ["image/png"]
    assert any("E-4012" in email.text for email in emails.values())
    injection = [email for email in emails.values() if "ignore previous instructions" in email.text.lower()]
    assert len(injection) == 1  # kept verbatim as data; nothing here interprets it


# --- tables --------------------------------------------------------------------------------------

OUTLOOK = b"""<html><body><table width="100%" cellpadding="0" cellspacing="0" border="0"><tr><td align="center">
<table width="600" style="width:600px"><tr><td><img src="https://cdn.example/logo.png" width="120" height="40"></td></tr>
<tr><td style="font-family:Arial">Hello,</td></tr>
<tr><td>My card</td><td>was declined at the station</td><td>this morning.</td></tr>
<tr><td colspan="3">Error E-4012 on the screen.</td></tr></table></td></tr></table></body></html>"""


def test_a_layout_table_reads_as_lines_of_text():
    email = parsed(mail(OUTLOOK, ctype=b"text/html; charset=utf-8"))
    assert "My card was declined at the station this morning." in email.text
    assert "Hello," in email.text and "Error E-4012 on the screen." in email.text
    assert "|" not in email.full_text and "---" not in email.full_text


def test_a_presentation_table_is_layout_whatever_its_size():
    rows = "".join(f"<tr><td>part {i}a</td><td>part {i}b</td><td>part {i}c</td></tr>" for i in range(5))
    html = f'<table role="presentation">{rows}</table>'.encode()
    text = parsed(mail(html, ctype=b"text/html")).text
    assert "part 0a part 0b part 0c" in text and "|" not in text


@pytest.mark.parametrize("header", [True, False])
def test_a_data_table_keeps_one_line_per_row_with_its_cells_apart(header: bool):
    cell = "th" if header else "td"
    head = f"<tr><{cell}>Date</{cell}><{cell}>Amount</{cell}><{cell}>Merchant</{cell}></tr>"
    rows = "".join(f"<tr><td>{d} Dec</td><td>£{a}</td><td>{m}</td></tr>"
                   for d, a, m in ((1, "12.00", "Tesco"), (2, "8.50", "Boots"), (3, "3.20", "Pret")))
    html = f"<p>These are not mine:</p><table>{head}{rows}</table><p>Thanks</p>".encode()
    lines = [line.strip() for line in parsed(mail(html, ctype=b"text/html; charset=utf-8")).text.splitlines()]
    assert ["Date| Amount| Merchant", "1 Dec| £12.00| Tesco", "2 Dec| £8.50| Boots", "3 Dec| £3.20| Pret"] == [
        line for line in lines if "|" in line]
    assert not [line for line in lines if "---" in line]


_words = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=8), min_size=1, max_size=4)


@st.composite
def layout(draw: st.DrawFn, depth: int = 0) -> tuple[str, list[str]]:
    """Random mail-builder markup: divs, paragraphs, spans and layout tables (presentation, one row,
    one column or holding a table) around words; returns the HTML and its words in reading order."""
    kind = draw(st.sampled_from(["text", "div", "p", "table"] if depth < 3 else ["text"]))
    if kind == "text":
        words = draw(_words)
        return " ".join(words), words
    children = [draw(layout(depth + 1)) for _ in range(draw(st.integers(1, 3)))]
    words = [w for _, ws in children for w in ws]
    if kind != "table":
        return f"<{kind}>" + " ".join(html for html, _ in children) + f"</{kind}>", words
    shape = draw(st.sampled_from(["presentation", "row", "column"]))
    cells = [f"<td>{html}</td>" for html, _ in children]
    if shape == "presentation":
        return '<table role="presentation"><tr>' + "".join(cells) + "</tr></table>", words
    if shape == "row":
        return "<table><tr>" + "".join(cells) + "</tr></table>", words
    return "<table>" + "".join(f"<tr>{c}</tr>" for c in cells) + "</table>", words


@settings(max_examples=150, deadline=None)
@given(layout())
def test_fuzzed_layouts_keep_every_word_in_order_and_no_table_syntax(sample: tuple[str, list[str]]):
    html, words = sample
    text = parsed(mail(f"<html><body>{html}</body></html>".encode(), ctype=b"text/html")).full_text
    assert "|" not in text and "---" not in text
    assert text.split() == words

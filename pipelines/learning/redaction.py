"""Personal data out of text that becomes a knowledge-base article. What the product's redactor finds
(pipelines.privacy.redaction: cards by Luhn, IBANs by mod 97, phones by their layouts, emails, national
IDs, secrets) becomes a bracketed word a customer can read ("[card number]", not `[CARD_1]`: nothing is
ever filled back into an article). On top of it, what only an article must lose: sort codes, any other
long run of digits (account, customer or order numbers, a card number that fails its checksum), the
names in greetings and sign-offs, and the names we know (the cases' customers)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from pipelines.privacy import redaction as privacy

EMAIL = "[email]"
PHONE = "[phone number]"
CARD = "[card number]"
ACCOUNT = "[account number]"
ID = "[ID number]"
SECRET = "[secret]"
NAME = "[name]"

WORDS = {privacy.CARD: CARD, privacy.IBAN: ACCOUNT, privacy.PHONE: PHONE, privacy.EMAIL: EMAIL,
         privacy.ID: ID, privacy.SECRET: SECRET}

# UK sort code: 12-34-56 (the privacy redactor reads it as a date and leaves it).
_SORT_CODE = re.compile(r"(?<![\w-])\d{2}-\d{2}-\d{2}(?![\w-])")
# Digits left over once the privacy redactor is done, alone or in groups joined by a space or a dash:
# from 6 digits on, an account, customer or order number (amounts, years and masked cards are shorter,
# "£1,000" and "3.5" are amounts). A number nobody recognised is still nothing a reader needs.
_DIGITS = re.compile(r"(?<![\w.,+-])\d+(?:[ -]\d{2,})*(?![\w]|[.,-]\d)")
_DATE = re.compile(r"\d{1,4}-\d{1,2}-\d{2,4}")
_WORD = r"[A-Z][a-zA-Z'’-]+"
# "Hi Mia," / "Dear Mr Smith" / "Hello Anna Maria Lopez": the words after a greeting that start
# with a capital letter, up to three of them.
_GREETING = re.compile(
    rf"\b((?:hi|hello|hey|dear|good (?:morning|afternoon|evening))[ ,]+)"
    rf"((?:(?:mr|mrs|ms|miss|dr)\.? )?{_WORD}(?: {_WORD}){{0,2}})",
    re.IGNORECASE,
)
# A sign-off line followed by a name on the same or the next line: "Thanks, Mia" / "Regards,\nJohn Doe".
_SIGN_OFF = re.compile(
    rf"\b((?:thanks|thank you|cheers|regards|best regards|kind regards|best|sincerely|many thanks)"
    rf"[ \t]*[,!.-]?[ \t]*\n?[ \t]*)({_WORD}(?: {_WORD}){{0,2}})[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
# Words a greeting or sign-off is followed by that are no name.
_NOT_NAMES = frozenset({"there", "team", "all", "everyone", "support", "again", "so", "for", "and", "sir", "madam",
                        "the", "i", "we", "you", "your", "my", "this", "it", "in", "a", "to"})


def _found(text: str) -> str:
    parts: list[str] = []
    cursor = 0
    for f in privacy.find(text):
        parts += [text[cursor:f.start], WORDS[f.kind]]
        cursor = f.end
    parts.append(text[cursor:])
    return "".join(parts)


def _digits(match: re.Match[str]) -> str:
    found = match[0]
    if _DATE.fullmatch(found) or sum(ch.isdigit() for ch in found) < 6:
        return found
    return ACCOUNT


def _name_words(match: re.Match[str]) -> str:
    words = match[2].split()
    if match[2].lower().rstrip(".") in ("mr", "mrs", "ms", "dr") or any(w.lower() in _NOT_NAMES for w in words):
        return match[0]
    # Flagged case-insensitively, so check the capital here: "hi there" or "hello again" stay.
    if not words[-1][:1].isupper():
        return match[0]
    return match[1] + NAME


def redact(text: str, names: Iterable[str | None] = ()) -> str:
    """`text` with personal data replaced by placeholders. `names`: people's names known to appear
    (each word of at least 2 letters is replaced wherever it stands alone)."""
    text = _SORT_CODE.sub(ACCOUNT, _found(text))
    text = _DIGITS.sub(_digits, text)
    words = sorted({w for n in names if n for w in re.findall(r"[^\W\d_][\w'’-]+", n) if len(w) >= 2},
                   key=len, reverse=True)
    if words:
        pattern = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
        text = pattern.sub(NAME, text)
        text = re.sub(rf"{re.escape(NAME)}(?:\s+{re.escape(NAME)})+", NAME, text)
    text = _GREETING.sub(_name_words, text)
    return _SIGN_OFF.sub(_name_words, text)

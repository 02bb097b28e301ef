"""Personal data out of text that becomes a knowledge-base article: email addresses, phone numbers,
card, account and sort-code numbers, the names in greetings and sign-offs, and the names we know
(the cases' customers). Each is replaced by a bracketed placeholder, so that the text still reads."""

from __future__ import annotations

import re
from collections.abc import Iterable

EMAIL = "[email]"
PHONE = "[phone number]"
CARD = "[card number]"
ACCOUNT = "[account number]"
NAME = "[name]"

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b")
# 13 to 19 digits in groups (card numbers); a masked card (**** 1234) is kept, as it names no card.
_CARD = re.compile(r"(?<![\w.])\d(?:[ -]?\d){12,18}(?![\w.])")
# UK sort code: 12-34-56.
_SORT_CODE = re.compile(r"(?<![\w-])\d{2}-\d{2}-\d{2}(?![\w-])")
# A phone number: an optional +country code, then at least 7 digits with spaces, dots, dashes or
# brackets between them.
_PHONE = re.compile(r"(?<![\w.])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d(?:[ .-]?\d){6,13}(?![\w])")
# A run of 6 to 9 digits alone: an account or customer number (amounts and years are shorter,
# a phone number longer).
_NUMBER = re.compile(r"(?<![\w+])(?<!\d[.,])\d{6,9}(?!\w|[.,]\d)")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
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


def _numbers(text: str) -> str:
    text = _EMAIL.sub(EMAIL, text)
    text = _IBAN.sub(ACCOUNT, text)
    text = _CARD.sub(CARD, text)
    text = _SORT_CODE.sub(ACCOUNT, text)
    text = _PHONE.sub(_phone, text)
    return _NUMBER.sub(ACCOUNT, text)


def _phone(match: re.Match[str]) -> str:
    """A phone number, unless it is a date, or a bare run of digits too short for one (an account)."""
    found = match[0]
    bare = found.isdigit()
    if _ISO_DATE.fullmatch(found) or (bare and len(found) < 10):
        return found
    return PHONE


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
    text = _numbers(text)
    words = sorted({w for n in names if n for w in re.findall(r"[^\W\d_][\w'’-]+", n) if len(w) >= 2},
                   key=len, reverse=True)
    if words:
        pattern = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
        text = pattern.sub(NAME, text)
        text = re.sub(rf"{re.escape(NAME)}(?:\s+{re.escape(NAME)})+", NAME, text)
    text = _GREETING.sub(_name_words, text)
    return _SIGN_OFF.sub(_name_words, text)

"""Personal data out of text bound for an AI provider, and back into what a person reads.

Each value found becomes a typed, numbered placeholder (`[CARD_1]`, `[EMAIL_2]`); the map from
placeholder to value stays with the case, so a draft written with placeholders is filled back from
that case's own values. Detection is deliberately checksum- and shape-driven (Luhn, mod 97, SSA
ranges, phone layouts) so that order numbers, dates, amounts and tracking codes stay readable."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

CARD, IBAN, PHONE, EMAIL, ID, SECRET = "CARD", "IBAN", "PHONE", "EMAIL", "ID", "SECRET"
TYPES = (CARD, IBAN, PHONE, EMAIL, ID, SECRET)

PLACEHOLDER = re.compile(r"\[([A-Z][A-Z0-9_]*)_(\d+)\]")
_TYPE_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


@dataclass(frozen=True)
class Pattern:
    """An extra pattern from settings: what it matches becomes `[KIND_n]` (group 1 if it has one)."""

    kind: str
    regex: re.Pattern[str]


@dataclass(frozen=True)
class Finding:
    kind: str
    value: str
    start: int
    end: int


@dataclass(frozen=True)
class Redacted:
    text: str
    mapping: dict[str, str] = field(default_factory=dict)  # placeholder -> original value


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# ISO 13616 lengths of the countries a European desk meets most; an unlisted country still needs
# the mod-97 checksum and a plausible length.
IBAN_LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20,
    "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IS": 26,
    "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28,
    "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26, "AE": 23, "SA": 24, "BR": 29,
}


def iban_ok(iban: str) -> bool:
    if not 15 <= len(iban) <= 34 or IBAN_LENGTHS.get(iban[:2], len(iban)) != len(iban):
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
# 13-19 digits, grouped by single spaces or dashes; a major network's first digit (2-6).
_CARD = re.compile(r"(?<![\w+.,/-])[2-6]\d(?:[ -]?\d){11,17}(?![\w]|[.,/-]\d)")
_SSN = re.compile(r"(?<![\w-])(?!000|666|9)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")
_SSN_LABELLED = re.compile(r"(?i)\b(?:ssn|social security(?: number| no\.?)?)\W{1,4}((?!000|666|9)\d{9})\b")
_NINO = re.compile(r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
_CPF = re.compile(r"(?<![\w.-])\d{3}\.\d{3}\.\d{3}-\d{2}(?![\w.-])")
# Provider keys by their documented prefixes, then anything long after "api key"/"token"/"secret".
_KEY = re.compile(
    r"\b(?:sk-(?:ant-|proj-|live_|test_)?[A-Za-z0-9_-]{20,}|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"
    r"|glpat-[A-Za-z0-9_-]{20,}|AIza[0-9A-Za-z_-]{35})"
)
_LABELLED_TOKEN = re.compile(
    r"(?i)\b(?:api[ _-]?key|access[ _-]?key|secret(?:[ _-]?key)?|(?:(?:auth|access|bearer|api)[ _-]?)?token)"
    r"\s*(?:is\s*)?[:=]\s*[\"']?([A-Za-z0-9_\-./+=]{16,})"
)
_LABELLED_PASSWORD = re.compile(
    r"(?i)\b(?:password|passcode|passwd|pwd)\s*(?:is\s*)?[:=]\s*[\"']?(\S+?)[\"']?(?=[.,;)]?(?:\s|$))"
)
_LABELLED_PIN = re.compile(r"(?i)\bpin(?:\s*code)?\s*(?:is\s*)?[:=]\s*(\d{4,8})\b")
_LABELLED = ((_LABELLED_TOKEN, ("key", "secret", "token")), (_LABELLED_PASSWORD, ("pass", "pwd")),
             (_LABELLED_PIN, ("pin",)))

# A phone candidate: optional +CC / 00, digits with single spaces, dots, dashes or brackets between.
_PHONE = re.compile(r"(?<![\w+#/.,-])(?:\+|\b00)?\(?\d(?:(?:[ .-]|\)[ ]?|[ ]?\()?\d){6,16}(?![\w]|[.,/-]\d)")
_US_PHONE = re.compile(r"(?:\+?1[ .-]?)?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .-])[2-9]\d{2}[ .-]\d{4}")
_DATE_LIKE = re.compile(r"\d{1,4}([.-])\d{1,2}\1\d{2,4}")
# Words just before a number that make it a reference, not a phone.
_REFERENCE_WORDS = re.compile(
    r"(?i)(?:order|invoice|inv|ref|reference|tracking|parcel|shipment|case|ticket|account|acct|"
    r"transaction|txn|id|no\.?|number|#|€|£|\$|eur|gbp|usd|chf|inr|brl|r\$)\W{0,3}$"
)
_PHONE_WORDS = re.compile(r"(?i)(?:phone|mobile|mob|tel|call|cell|whatsapp|number|reach me|text me|on)\W{0,6}$")


def _cards(text: str) -> Iterator[Finding]:
    for m in _CARD.finditer(text):
        value = m[0]
        digits = value.replace(" ", "").replace("-", "")
        if 13 <= len(digits) <= 19 and luhn_ok(digits) and not ("-" in value and " " in value):
            yield Finding(CARD, value, m.start(), m.end())


def _ibans(text: str) -> Iterator[Finding]:
    for m in _IBAN.finditer(text):
        raw = m[0]
        want = IBAN_LENGTHS.get(raw[:2])
        compact = raw.replace(" ", "")
        if want is not None and len(compact) > want:
            # The pattern may run on into a following capitalised word or number: cut at the length.
            count = 0
            for i, ch in enumerate(raw):
                count += ch != " "
                if count == want:
                    raw = raw[: i + 1]
                    break
            compact = raw.replace(" ", "")
        if iban_ok(compact):
            yield Finding(IBAN, raw, m.start(), m.start() + len(raw))


def _cpf_ok(digits: str) -> bool:
    if len(set(digits)) == 1:
        return False
    for n in (9, 10):
        total = sum(int(d) * (n + 1 - i) for i, d in enumerate(digits[:n]))
        if (total * 10 % 11) % 10 != int(digits[n]):
            return False
    return True


def _ids(text: str) -> Iterator[Finding]:
    for m in _SSN.finditer(text):
        yield Finding(ID, m[0], m.start(), m.end())
    lowered = text.lower()
    if "ssn" in lowered or "social" in lowered:  # the case-blind search only where it can match
        for m in _SSN_LABELLED.finditer(text):
            yield Finding(ID, m[1], m.start(1), m.end(1))
    for m in _NINO.finditer(text):
        yield Finding(ID, m[0], m.start(), m.end())
    for m in _CPF.finditer(text):
        if _cpf_ok(re.sub(r"\D", "", m[0])):
            yield Finding(ID, m[0], m.start(), m.end())


def _secrets(text: str) -> Iterator[Finding]:
    for m in _KEY.finditer(text):
        yield Finding(SECRET, m[0], m.start(), m.end())
    lowered = text.lower()
    labelled = [regex for regex, words in _LABELLED if any(w in lowered for w in words)]
    for regex in labelled:  # the case-blind searches only where a label word is in the text
        for m in regex.finditer(text):
            yield Finding(SECRET, m[1], m.start(1), m.end(1))


def _emails(text: str) -> Iterator[Finding]:
    for m in _EMAIL.finditer(text):
        yield Finding(EMAIL, m[0], m.start(), m.end())


def _is_phone(value: str, before: str) -> bool:
    digits = sum(ch.isdigit() for ch in value)
    if value.count("(") != value.count(")") or _DATE_LIKE.fullmatch(value):
        return False
    if value.startswith("+"):  # "+CC …" is how phones are written, whatever word or sign precedes it
        return 8 <= digits <= 15
    if _REFERENCE_WORDS.search(before) and not _PHONE_WORDS.search(before[-12:]):
        return False
    if value.startswith("00"):
        return 10 <= digits <= 15
    if _US_PHONE.fullmatch(value):
        return True
    # National formats start with a trunk 0 (UK, DE, FR, NL, IN, BR) and run to 9-12 digits.
    return value.startswith(("0", "(0")) and 9 <= digits <= 12 and not value.startswith(("00", "0.", "0-"))


def _phones(text: str) -> Iterator[Finding]:
    for m in _PHONE.finditer(text):
        value = m[0].rstrip(" .-(")
        if _is_phone(value, text[max(0, m.start() - 24): m.start()]):
            yield Finding(PHONE, value, m.start(), m.start() + len(value))


def _extras(patterns: Sequence[Pattern]) -> Callable[[str], Iterator[Finding]]:
    def find(text: str) -> Iterator[Finding]:
        for pattern in patterns:
            for m in pattern.regex.finditer(text):
                group = 1 if pattern.regex.groups else 0
                if m.start(group) < m.end(group):
                    yield Finding(pattern.kind, m[group], m.start(group), m.end(group))
    return find


# Earlier detectors win an overlap: a secret may hold digits, an email a phone-like local part,
# an IBAN a card-like run, a card a phone-like run.
_DETECTORS: tuple[Callable[[str], Iterator[Finding]], ...] = (_secrets, _emails, _ibans, _cards, _ids, _phones)


def find(text: str, extra: Sequence[Pattern] = ()) -> list[Finding]:
    """Every value to redact, in text order, none overlapping another."""
    taken: list[Finding] = []
    for detector in (*_DETECTORS, _extras(extra)):
        for f in detector(text):
            if not any(f.start < t.end and t.start < f.end for t in taken):
                taken.append(f)
    return sorted(taken, key=lambda f: f.start)


def redact(text: str, *, extra: Sequence[Pattern] = (), known: Mapping[str, str] | None = None) -> Redacted:
    """`text` with each value found replaced by its placeholder. `known`: the case's map so far, so
    a value seen before keeps its placeholder and new ones number on from it."""
    mapping = dict(known or {})
    by_value = {(PLACEHOLDER.fullmatch(p)[1], v): p for p, v in mapping.items() if PLACEHOLDER.fullmatch(p)}  # type: ignore[index]
    used: dict[str, int] = {}
    # Placeholders already in the map or written in the text keep their numbers: a literal
    # "[CARD_1]" in a customer's message must not come back as someone's card.
    for m in PLACEHOLDER.finditer(" ".join([text, *mapping])):
        used[m[1]] = max(used.get(m[1], 0), int(m[2]))
    parts: list[str] = []
    cursor = 0
    for f in find(text, extra):
        placeholder = by_value.get((f.kind, f.value))
        if placeholder is None:
            used[f.kind] = used.get(f.kind, 0) + 1
            placeholder = f"[{f.kind}_{used[f.kind]}]"
            by_value[(f.kind, f.value)] = placeholder
            mapping[placeholder] = f.value
        parts += [text[cursor:f.start], placeholder]
        cursor = f.end
    parts.append(text[cursor:])
    return Redacted("".join(parts), mapping)


def restore(text: str, mapping: Mapping[str, str]) -> str:
    """Placeholders filled back from `mapping`; one it does not hold stays as written."""
    return PLACEHOLDER.sub(lambda m: mapping.get(m[0], m[0]), text)


def mask(value: str) -> str:
    """A value as an audit may show it: every letter and digit hidden but the last two."""
    keep = len(value) - 2
    return "".join("*" if i < keep and ch.isalnum() else ch for i, ch in enumerate(value))


def parse_patterns(spec: str | None) -> tuple[Pattern, ...]:
    """`NAME: regex;;NAME: regex` (PII_EXTRA_PATTERNS) as patterns; ValueError names a bad one."""
    patterns = []
    for entry in (spec or "").split(";;"):
        if not entry.strip():
            continue
        name, sep, source = entry.partition(":")
        name, source = name.strip(), source.strip()
        if not sep or not _TYPE_NAME.fullmatch(name):
            raise ValueError(f"{entry.strip()!r}: each entry must be NAME: regex, NAME in capitals (A-Z, 0-9, _)")
        try:
            regex = re.compile(source)
        except re.error as exc:
            raise ValueError(f"{name}: {source!r} is not a valid regular expression ({exc})") from None
        if regex.groups > 1 or regex.search("") is not None:
            raise ValueError(f"{name}: {source!r} must not match empty text and has at most one group")
        patterns.append(Pattern(name, regex))
    return tuple(patterns)

"""Cheap signals read straight from the text, for the local triager: language, sentiment,
error codes, a one-line summary and urgency. No model, so they work offline and in microseconds;
Claude replaces them whenever the cascade asks it."""

from __future__ import annotations

import re

from pipelines.models import Sentiment, Severity

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_LATIN = re.compile(r"[a-zA-Z\u00c0-\u024f]")
# Letters of another script name the language outright, counted per script; kana wins over Han (Japanese
# mixes both), Ukrainian letters over the rest of Cyrillic.
_SCRIPTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("ja", re.compile(r"[\u3040-\u30ff\u31f0-\u31ff]")),
    ("ko", re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")),
    ("zh", re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")),
    ("uk", re.compile(r"[іїєґІЇЄҐ]")),
    ("ru", re.compile(r"[\u0400-\u04ff]")),
    ("ar", re.compile(r"[\u0600-\u06ff\u0750-\u077f]")),
    ("he", re.compile(r"[\u0590-\u05ff]")),
    ("el", re.compile(r"[\u0370-\u03ff]")),
    ("th", re.compile(r"[\u0e00-\u0e7f]")),
    ("hi", re.compile(r"[\u0900-\u097f]")),
)

# The most frequent function words of each language: enough to tell them apart in a few lines.
_STOPWORDS = {
    "en": {"the", "and", "is", "my", "to", "i", "it", "of", "have", "not", "you", "a", "in", "for", "was", "this"},
    "de": {"der", "die", "und", "ist", "nicht", "ich", "meine", "mein", "das", "ein", "eine", "mit", "noch", "habe", "wurde"},
    "fr": {"le", "la", "les", "et", "est", "je", "pas", "mon", "ma", "une", "un", "des", "pour", "que", "carte"},
    "es": {"el", "la", "los", "y", "es", "mi", "no", "una", "un", "que", "para", "por", "con", "tarjeta", "pero"},
    "it": {"il", "la", "e", "non", "mio", "mia", "una", "che", "per", "sono", "ho", "della", "carta", "ma"},
    "nl": {"de", "het", "en", "is", "niet", "ik", "mijn", "een", "van", "dat", "voor", "met", "nog", "heb"},
    "pt": {"o", "a", "os", "e", "não", "meu", "minha", "uma", "um", "que", "para", "com", "cartão", "mas"},
    "pl": {"nie", "jest", "mój", "moja", "moje", "się", "na", "że", "karta", "mam", "czy", "jak", "już", "ale"},
    "tr": {"ve", "bir", "bu", "için", "değil", "benim", "kartım", "ile", "çok", "ne", "mi", "ama", "hala"},
    "sv": {"och", "är", "inte", "jag", "min", "mitt", "det", "ett", "att", "för", "med", "kortet", "har"},
}

_NEGATIVE = {
    "angry", "annoyed", "awful", "ridiculous", "unacceptable", "terrible", "worst", "disgusted", "furious",
    "frustrated", "frustrating", "useless", "scam", "fraud", "complaint", "cancel", "disappointed",
    "horrible", "outraged", "still", "again", "nobody", "never", "lawyer", "wtf", "joke",
}
_POSITIVE = {"thanks", "thank", "great", "love", "appreciate", "excellent", "awesome", "perfect", "happy", "helpful"}

# ERR_AUTH_1042, E-1042, AUTH1042, or a number after "error"/"code"/"err".
_ERROR_CODE = re.compile(r"\b(?:[A-Z]{1,5}(?:_[A-Z]{1,10})*[-_]?\d{2,6}|(?:error|code|err)\s*#?\s*(\d{3,6}))\b", re.I)
_URGENT = re.compile(
    r"\b(urgent|asap|immediately|emergency|stolen|fraud|hacked|unauthori[sz]ed|compromised|"
    r"can'?t access|locked out|data loss|outage|down for everyone|"
    r"gestohlen|dringend|sofort|vol[ée]e?|urgente?|robad[ao]|rubata?)\b",
    re.I,
)


def detect_language(text: str) -> str:
    """An ISO 639-1 code: by script when most letters are not Latin (so the guard in the local triager
    also holds for Japanese, Chinese, Korean, Cyrillic, Arabic, Hebrew, Greek, Thai and Devanagari), else
    by the function words of the Latin-script languages above; "en" when nothing tells."""
    counts = {language: len(script.findall(text)) for language, script in _SCRIPTS}
    foreign = sum(n for language, n in counts.items() if language != "uk")
    if foreign > len(_LATIN.findall(text)):
        if counts["ja"]:
            return "ja"
        if counts["uk"]:
            return "uk"
        return max(counts, key=lambda language: counts[language])
    words = _WORD.findall(text.lower())
    if not words:
        return "en"
    scores = {lang: sum(w in stop for w in words) for lang, stop in _STOPWORDS.items()}
    best = max(scores, key=lambda lang: scores[lang])
    return best if scores[best] > 0 else "en"


def sentiment(text: str) -> Sentiment:
    words = _WORD.findall(text.lower())
    negative = sum(w in _NEGATIVE for w in words) + text.count("!!") + len(re.findall(r"\b[A-Z]{4,}\b", text)) // 2
    positive = sum(w in _POSITIVE for w in words)
    if negative >= 2 and negative > positive:
        return "negative"
    if positive > negative:
        return "positive"
    return "neutral"


def error_codes(text: str) -> list[str]:
    codes: list[str] = []
    for match in _ERROR_CODE.finditer(text):
        code = match.group(1) or match.group(0)
        # A bare year or amount is not an error code; codes in the wild carry letters or a "code" cue.
        if code.isdigit() and not match.group(1):
            continue
        if code.upper() not in codes:
            codes.append(code.upper())
    return codes[:20]


def summary(subject: str | None, body: str, limit: int = 200) -> str:
    source = subject.strip() if subject and subject.strip() else body.strip()
    first = re.split(r"(?<=[.!?])\s|\n", source, maxsplit=1)[0].strip() or source
    return first if len(first) <= limit else first[: limit - 1].rsplit(" ", 1)[0] + "…"


def priority(default: Severity, reported: str | None, text: str) -> Severity:
    """The category's default, raised by what the customer reports or writes, never lowered."""
    order: list[Severity] = ["low", "medium", "high", "critical"]
    level = order.index(default)
    if reported in order:
        level = max(level, order.index(reported))
    if _URGENT.search(text):
        level = max(level, order.index("high"))
    return order[level]

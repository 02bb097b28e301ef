from __future__ import annotations

import pytest

from pipelines.triage import text_signals as ts


def test_languages_of_the_sample_inbox():
    assert ts.detect_language("My card has not arrived and I need it for my trip") == "en"
    assert ts.detect_language("Mir wurde heute meine Karte gestohlen, bitte sperren Sie die Karte") == "de"
    assert ts.detect_language("Bonjour, le distributeur ne m'a pas donné le bon montant pour ma carte") == "fr"
    assert ts.detect_language("") == "en"


@pytest.mark.parametrize(("text", "language"), [
    ("カードが届かない", "ja"),
    ("件名: カァドが届かない\n先週注文したカードがまだ届きません。", "ja"),
    ("我的银行卡还没有收到", "zh"),
    ("카드가 아직 도착하지 않았어요", "ko"),
    ("Моя карта до сих пор не пришла", "ru"),
    ("Моя картка досі не прийшла, що робити?", "uk"),
    ("لم تصل بطاقتي بعد", "ar"),
    ("הכרטיס שלי עדיין לא הגיע", "he"),
    ("Η κάρτα μου δεν έχει φτάσει ακόμα", "el"),
    ("บัตรของฉันยังไม่มาถึง", "th"),
    ("मेरा कार्ड अभी तक नहीं आया", "hi"),
    ("Moja karta jeszcze nie przyszła, czy coś jest nie tak?", "pl"),
    ("Kartım hala gelmedi, bu normal mi?", "tr"),
    ("Jag har inte fått mitt kort och det är bråttom", "sv"),
    ("Hi, my card ERR_CARD_3051 — カード", "en"),  # a word of another script in an English email
])
def test_every_script_and_more_latin_languages_are_told_apart(text: str, language: str):
    assert ts.detect_language(text) == language


def test_sentiment_needs_more_than_one_cross_word():
    assert ts.sentiment("This is ridiculous. Third time I write, still nothing!! Unacceptable.") == "negative"
    assert ts.sentiment("My card is still not here.") == "neutral"
    assert ts.sentiment("Thanks, that was very helpful") == "positive"


def test_error_codes_are_found_and_years_are_not():
    assert ts.error_codes("The app shows error E-4012, and before that code 502, in 2026.") == ["E-4012", "502"]
    assert ts.error_codes("I paid 250 GBP on 12 November") == []


def test_priority_is_raised_never_lowered():
    assert ts.priority("low", None, "what is the exchange rate") == "low"
    assert ts.priority("low", "high", "question") == "high"
    assert ts.priority("medium", None, "my card was stolen") == "high"
    assert ts.priority("medium", None, "Karte gestohlen") == "high"
    assert ts.priority("high", "low", "whatever") == "high"


def test_summary_is_one_bounded_line():
    assert ts.summary("Card not arrived", "long body") == "Card not arrived"
    assert ts.summary(None, "First sentence here. Second one.") == "First sentence here."
    long = ts.summary(None, "word " * 100)
    assert len(long) <= 200 and long.endswith("…")

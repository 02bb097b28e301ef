"""Writes snippets.jsonl, the labelled set bench/pii_redaction.py measures: realistic support-mail
sentences, each with the personal data it holds (none for the near-misses). Deterministic: run
`python samples/pii/make_snippets.py` and the file comes out the same. Card numbers and IBANs are
made checksum-valid here, so that the set tests the detector and not our arithmetic."""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).with_name("snippets.jsonl")
rng = random.Random(13)


def luhn_complete(body: str) -> str:
    for check in "0123456789":
        digits = body + check
        total = sum((d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 else d
                    for i, d in enumerate(int(c) for c in reversed(digits)))
        if total % 10 == 0:
            return digits
    raise AssertionError(body)


def luhn_broken(body: str) -> str:
    good = luhn_complete(body)
    return good[:-1] + str((int(good[-1]) + 3) % 10)


def card(prefix: str, length: int) -> str:
    return luhn_complete(prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1)))


def grouped(digits: str, sizes: list[int], sep: str) -> str:
    parts, i = [], 0
    for size in sizes:
        parts.append(digits[i:i + size])
        i += size
    return sep.join(parts)


def iban(country: str, bban: str) -> str:
    moved = bban + country + "00"
    check = 98 - int("".join(str(int(c, 36)) for c in moved)) % 97
    return f"{country}{check:02d}{bban}"


def spaced(code: str) -> str:
    return " ".join(code[i:i + 4] for i in range(0, len(code), 4))


def digits(n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


rows: list[dict[str, object]] = []


def add(text: str, *pii: tuple[str, str]) -> None:
    for _, value in pii:
        assert value in text, (value, text)
    rows.append({"text": text, "pii": [{"type": t, "value": v} for t, v in pii]})


# Cards: Visa 16/13/19, Mastercard 51-55 and 2-series, Amex 15 (4-6-5), Discover, grouped every way.
card_texts = [
    "My card {} was charged twice for the same coffee.",
    "Please block card number {} immediately, it was stolen.",
    "Die Karte {} wurde gestern abgelehnt.",
    "Ma carte {} a été débitée deux fois.",
    "the payment on {} (exp 09/28) never went through",
    "Card: {}\nName on card: as on file",
    "I used {} at the airport and it got declined",
    "Mijn kaart {} werkt niet meer in de winkel.",
]
for i, (prefix, length, sizes) in enumerate([
    ("4", 16, [4, 4, 4, 4]), ("4", 13, [4, 4, 5]), ("4", 19, [4, 4, 4, 4, 3]), ("51", 16, [4, 4, 4, 4]),
    ("55", 16, [4, 4, 4, 4]), ("2221", 16, [4, 4, 4, 4]), ("2720", 16, [4, 4, 4, 4]), ("34", 15, [4, 6, 5]),
    ("37", 15, [4, 6, 5]), ("6011", 16, [4, 4, 4, 4]), ("4", 16, [4, 4, 4, 4]), ("53", 16, [4, 4, 4, 4]),
    ("4", 16, [16]), ("37", 15, [15]), ("52", 16, [16]), ("4", 16, [4, 4, 4, 4]),
    ("35", 16, [4, 4, 4, 4]), ("4", 16, [4, 4, 4, 4]), ("54", 16, [4, 4, 4, 4]), ("36", 14, [4, 6, 4]),
]):
    number = card(prefix, length)
    value = grouped(number, sizes, "-" if i % 3 == 1 else " ")
    add(card_texts[i % len(card_texts)].format(value), ("CARD", value))

# IBANs of several countries, spaced in fours or written solid.
bbans = {
    "GB": lambda: "NWBK" + digits(14), "DE": lambda: digits(18), "FR": lambda: digits(10) + "ABC" + digits(8)[:8] + "12",
    "NL": lambda: "ABNA" + digits(10), "ES": lambda: digits(20), "IT": lambda: "X" + digits(10) + "ABCDEFGHIJKL",
    "BE": lambda: digits(12), "IE": lambda: "AIBK" + digits(14), "CH": lambda: digits(17), "PL": lambda: digits(24),
    "AT": lambda: digits(16), "PT": lambda: digits(21),
}
iban_texts = [
    "Please refund to IBAN {} instead.",
    "Bitte überweisen Sie auf {}.",
    "Mon IBAN est {}, merci de rembourser.",
    "The transfer to {} has not arrived after 3 days.",
    "Rekeningnummer: {}",
]
for i, (country, make) in enumerate(list(bbans.items()) * 2):
    code = iban(country, make())
    value = spaced(code) if i % 2 == 0 else code
    add(iban_texts[i % len(iban_texts)].format(value), ("IBAN", value))

# Phones: international and national formats of UK, DE, FR, NL, US, IN, BR.
phones = [
    "+44 20 7946 0958", "+44 7700 900123", "07700 900456", "020 7946 0321", "+447700900789",
    "+49 30 12345678", "+49 151 23456789", "030 98765432", "0151 2345 6789", "+49 (0)89 1234567",
    "+33 1 42 68 53 00", "+33 6 12 34 56 78", "06 12 34 56 78", "01.42.68.53.00", "+33612345679",
    "+31 20 123 4567", "+31 6 12345678", "06-12345678", "020-1234567",
    "+1 415 555 2671", "(415) 555-2671", "415-555-0199", "212.555.0143", "+1 (646) 555-0175",
    "+91 98765 43210", "+91-22-2778-1234", "098765 43210", "+919876543211",
    "+55 11 91234-5678", "+55 (21) 3456-7890", "(11) 91234-5678", "0044 20 7946 0000",
]
phone_texts = [
    "You can call me on {} after 6pm.",
    "My new mobile number is {}",
    "Rufen Sie mich bitte unter {} zurück.",
    "Vous pouvez me joindre au {}.",
    "Bel me op {} als het kan.",
    "phone: {}",
    "WhatsApp me at {} please, I am abroad.",
    "Tel. {} (office hours)",
]
for i, value in enumerate(phones):
    add(phone_texts[i % len(phone_texts)].format(value), ("PHONE", value))

# Emails, the sender's own included.
emails = ["mia.wong@example.com", "j.doe+bank@gmail.com", "anna-lena.schmidt@web.de", "pierre_dupont@orange.fr",
          "k.devries@ziggo.nl", "ravi.kumar89@yahoo.co.in", "joao.silva@uol.com.br", "TOM@EXAMPLE.ORG",
          "billing@acme-corp.co.uk", "x@y.io"]
email_texts = ["From: Mia <{}>", "please reply to {} not my old address", "Email: {}",
               "my login is {} and I cannot get in", "cc {} on this"]
for i, value in enumerate(emails):
    add(email_texts[i % len(email_texts)].format(value), ("EMAIL", value))

# National identifiers: US SSNs, UK NINOs, BR CPFs.
ids = ["123-45-6789", "078-05-1121", "219-09-9999", "501-22-3344", "AB 12 34 56 C", "JG103759A", "CE 45 67 89 D",
       "111.444.777-35", "529.982.247-25"]
id_texts = ["My SSN is {} if you need to verify me.", "Social security: {}", "NI number {}",
            "National Insurance: {}", "CPF {} para o cadastro."]
for i, value in enumerate(ids):
    add(id_texts[i % len(id_texts)].format(value), ("ID", value))
add("SSN 123456789 for the tax form", ("ID", "123456789"))

# Secrets: provider keys by prefix, labelled tokens, passwords, passcodes, PINs.
secrets = [
    ("our key is {}", "sk-ant-api03-" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z"),
    ("OPENAI_API_KEY={}", "sk-proj-" + "Zx81Qw73Er65Ty49Ui2OpAsDfGh"),
    ("slack bot token {} leaked in the log", "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp"),
    ("AWS access key {} in the screenshot", "AKIAIOSFODNN7EXAMPLE"),
    ("git token {} (revoked?)", "ghp_" + "16C7e42F292c6912E7710c838347Ae178B4a"),
    ("api key: {}", "3f9a1c7e5b2d4086a9e1f3c5b7d90e2a"),
    ("token: {}", "eyJhbGciOiJIUzI1NiJ9.dGVzdA.c2lnbmF0dXJl"),
    ("My password: {} (please don't share)", "Tr0ub4dor&3"),
    ("password is: {}", "hunter2"),
    ("Passcode: {}", "884213"),
    ("pin: {}", "4921"),
    ("my PIN is: {} and it still says wrong", "0007"),
    ("Stripe secret key: {}", "sk_live_51HxQ2vKZ8a9b7c6d5e4f3g2h"),
]
for template, value in secrets:
    add(template.format(value), ("SECRET", value))

# Mixed: several types in one message, one value twice.
for i in range(20):
    c = grouped(card("4", 16), [4, 4, 4, 4], " ")
    e = emails[i % len(emails)]
    p = phones[(i * 5) % len(phones)]
    add(f"Hi team,\nmy card {c} was declined. Reach me at {e} or {p}.\nThanks", ("CARD", c), ("EMAIL", e), ("PHONE", p))
for i in range(8):
    code = iban("DE", digits(18))
    add(f"IBAN {spaced(code)} please, and email {emails[i]} when done.", ("IBAN", spaced(code)), ("EMAIL", emails[i]))

# Near-misses: nothing here is personal data.
near = [
    "Order #123456789 has not arrived yet.", "Order number 40012345678 was cancelled by mistake.",
    "My order 2026-118842 shows as shipped.", "Invoice INV-2026-004512 is wrong.", "invoice 0123456789 is unpaid",
    "Tracking code 1Z999AA10123456784 says delivered.", "DHL tracking JD014600006281234567",
    "Royal Mail tracking RN123456785GB", "USPS 9400 1000 0000 0000 0000 00 shows nothing",
    "Error ERR_CARD_3051 when paying.", "The app shows error code E-40412 after login.",
    "It happened on 2026-01-05 at 14:30.", "Payment on 05/01/2026 for £1,234.56.", "Am 05.01.2026 um 09:15 Uhr.",
    "Le 12/03/2025 à 18h45, montant 1 234,56 €.", "I was charged EUR 2,499.00 instead of 249.90.",
    "The amount was $10,000.00 on Jan 3.", "Transfer of 1.250.000,00 BRL is pending.",
    "Between 2026-01-05 and 2026-01-12 nothing worked.", "Our postcode is SW1A 1AA.", "PLZ 10115 Berlin",
    "Code postal 75008 Paris", "postcode 1012 AB Amsterdam", "ZIP 94105", "PIN code 560001 Bangalore",
    "The card ending **** 1234 was blocked.", "card ending in 4242", "Card number 4111 1111 1111 1112 (fails Luhn)",
    "Ref REF-5105-1051 on the letter", "App version 4.12.3 build 20260105",
    "Case 00012345 was closed.", "Ticket #88213 reopened.", "Transaction id 7f3e9a2c-1b4d-4e8a-9c3f-2a1b3c4d5e6f",
    "Receipt no. 000123456", "I have 3 cards and 2 accounts.", "It took 15 minutes, from 10:15 to 10:30.",
    "Call us back between 9 and 5.", "Sort your cards by date.", "My password was reset yesterday.",
    "The token expired after 24 hours.", "api key rotation is monthly", "I forgot my PIN again.",
    "Limit is 5000 per day, 20000 per month.", "Year 2026, quarter 1, week 02.", "Model X-2000-15 card reader",
    "SKU 400-123-4567-89", "Batch 2026.01.05.001", "ISBN 978-3-16-148410-0", "IP 192.168.100.200 blocked",
    "Version 10.0.19045.3803 of Windows", "Ref: DE-2026-000123", "Error 0x80070005 on install",
    "Booking code GB29XYZ", "Account ending 6819 only please", "The fee was 2.5% plus 0.30",
    "See case 2026-0105-77.", "Our office number is on the website.", "Reply by 5 January 2026.",
]
for text in near:
    add(text)
for _ in range(8):
    bad = grouped(luhn_broken("4" + digits(14)), [4, 4, 4, 4], " ")
    add(f"Reference {bad} on the statement" if _ % 2 else f"Order {bad.replace(' ', '')} is late")

with OUT.open("w", encoding="utf-8") as fh:
    for row in rows:
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
print(f"{len(rows)} snippets -> {OUT}")

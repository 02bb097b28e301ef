"""Cases for the KB-gap tests: triaged groups the demo knowledge base answers well (card delivery) or
not at all (crypto, mortgages), created in the last days, some with the reply that resolved them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from db import intake as intake_db
from db.pool import transaction

NOW = datetime(2026, 12, 10, 6, 0, tzinfo=UTC)

COVERED = [  # card_delivery / card_arrival: samples/kb/card-arrival.md answers these
    "My new card still hasn't arrived. When will my card arrive?",
    "I ordered a card a week ago and it has not been delivered yet, how long does card delivery take?",
    "Where is my card? Can I track the delivery of my physical card?",
    "Card not received yet. How long does delivery take to the United Kingdom?",
]
CRYPTO = [  # no article mentions crypto
    "Can I buy bitcoin in the app?",
    "Do you support cryptocurrency like ethereum or bitcoin?",
    "How do I sell my crypto holdings and move them to my bitcoin wallet?",
    "Is there a crypto exchange feature for buying ethereum?",
]
MORTGAGE = [
    "Do you offer mortgages? What mortgage interest rate would I get?",
    "Can I get a mortgage agreement in principle for buying a house?",
    "How do I apply for a mortgage and what deposit is needed for the house?",
]
PENSION = [
    "Can I open a pension with you and transfer my old pension pot?",
    "Do you have a pension product or retirement savings scheme?",
    "How do I consolidate my pension pots into one retirement account?",
]
REPLY = ("Hi {name},\n\nThanks for asking. We do not offer crypto trading in the app at the moment, so you cannot "
         "buy or sell bitcoin with your Northwind account. You can still send money to a regulated exchange by bank "
         "transfer.\n\nCall us on +44 20 7946 0958 if anything is unclear.\n\nBest regards,\nNorthwind Support")


async def add_case(pool, text: str, category: str | None, subcategory: str | None, *, at: datetime,
                   name: str = "Mia Wong", email: str | None = None, subject: str | None = None,
                   reply: str | None = None) -> uuid.UUID:
    """A triaged case created at `at`; with `reply`, the reply that went out on it (sent)."""
    email = email or f"{uuid.uuid4().hex[:8]}@example.com"
    async with transaction(pool) as conn:
        stored = await intake_db.create_case(
            conn, customer_email=email, customer_name=name, channel="email", subject=subject, description=text,
            interaction_type="email_in",
        )
        await conn.execute("UPDATE cases SET category = $2, subcategory = $3, created_at = $4 WHERE case_id = $1",
                           stored.case_id, category, subcategory, at)
        if reply is not None:
            await conn.execute(
                "INSERT INTO reply_outbox (case_id, draft_key, channel, to_address, subject, body, status, sent_at) "
                "VALUES ($1, $2, 'email', $3, 'Re: your question', $4, 'sent', $5)",
                stored.case_id, f"test:{stored.case_id}", email, reply, at + timedelta(hours=1),
            )
    return stored.case_id


async def add_group(pool, texts: list[str], category: str, subcategory: str, *, days_ago: float = 1,
                    replies: bool = False, names: tuple[str, ...] = ("Mia Wong", "Omar Haddad", "Li Na", "Eve Adams"),
                    ) -> list[uuid.UUID]:
    out = []
    for i, text in enumerate(texts):
        name = names[i % len(names)]
        out.append(await add_case(
            pool, text, category, subcategory, at=NOW - timedelta(days=days_ago, minutes=10 * i), name=name,
            reply=REPLY.format(name=name.split()[0]) if replies else None,
        ))
    return out

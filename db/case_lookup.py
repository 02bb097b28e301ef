"""Reading cases for people in Slack (`/case`, `/kb` Share): one case with its latest draft and
timeline, cases by customer email or by words, someone's open cases, and the review queue's size."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import asyncpg

from db.connection import Connection
from db.kb import snippet

# Only the start of a long text travels: Slack shows a few hundred characters of it at most.
_DESCRIPTION_CHARS = 2000
_TIMELINE_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class TimelineRow:
    at: datetime
    actor_type: str
    actor_id: str | None
    kind: str  # case_interactions.interaction_type
    message: str | None
    from_status: str | None
    to_status: str | None


@dataclass(frozen=True)
class CaseFacts:
    """One case as `/case` shows it; `timeline` holds the latest entries, oldest first."""

    case_id: UUID
    short_id: int
    status: str
    channel: str
    subject: str | None
    description: str
    summary: str | None
    category: str | None
    subcategory: str | None
    priority: str | None
    confidence: float | None
    owner: str | None
    jira_issue_key: str | None
    created_at: datetime
    customer_email: str
    customer_name: str | None
    tier: str
    draft_id: UUID | None
    draft: str | None
    drafted_at: datetime | None
    review_id: UUID | None
    resolution_type: str | None
    resolved_at: datetime | None
    csat: int | None
    timeline: list[TimelineRow]
    timeline_total: int


@dataclass(frozen=True)
class CaseRow:
    """One line of a list of cases."""

    case_id: UUID
    short_id: int
    status: str
    subject: str | None
    priority: str | None
    category: str | None
    owner: str | None
    customer_email: str
    created_at: datetime


@dataclass(frozen=True)
class QueueCounts:
    """The review queue as `/case` and App Home show it."""

    awaiting_review: int
    human_owned: int
    escalated: int
    oldest_short_id: int | None  # the case awaiting review longest
    oldest_subject: str | None
    oldest_waiting_since: datetime | None


@dataclass(frozen=True)
class DayCounts:
    created: int
    replied: int  # cases that reached `replied`
    auto_sent: int  # replies sent with no reviewer's approval
    sent_to_review: int
    escalated: int


@dataclass(frozen=True)
class SharedArticle:
    article_id: UUID
    chunk_id: UUID
    title: str
    url: str | None
    snippet: str


# The latest draft and review, and the latest timeline entries, in the one statement: a lookup is
# a single round trip. {where} is one of the two fixed conditions below, never user text.
_DETAIL = f"""
SELECT c.case_id, c.short_id, c.status, c.channel, c.subject, left(c.description, {_DESCRIPTION_CHARS}) AS description,
       c.summary, c.category, c.subcategory, c.priority, c.confidence_score::float8 AS confidence,
       c.owner_slack_user_id AS owner, c.jira_issue_key, c.created_at,
       cu.email AS customer_email, cu.name AS customer_name, cu.account_tier AS tier,
       d.draft_id, d.body AS draft, d.created_at AS drafted_at, r.review_id,
       c.resolution_type, c.resolved_at, c.csat,
       t.entries AS timeline, t.total AS timeline_total
FROM cases c
JOIN customers cu USING (customer_id)
LEFT JOIN LATERAL (SELECT draft_id, body, created_at FROM case_drafts
                   WHERE case_id = c.case_id ORDER BY created_at DESC LIMIT 1) d ON true
LEFT JOIN LATERAL (SELECT review_id FROM review_queue
                   WHERE case_id = c.case_id ORDER BY created_at DESC LIMIT 1) r ON true
CROSS JOIN LATERAL (
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'at', extract(epoch FROM e.created_at), 'actor_type', e.actor_type, 'actor_id', e.actor_id,
               'kind', e.interaction_type, 'message', left(e.message, {_TIMELINE_MESSAGE_CHARS}),
               'from_status', e.from_status, 'to_status', e.to_status)
               ORDER BY e.created_at, e.interaction_id), '[]') AS entries,
           (SELECT count(*) FROM case_interactions WHERE case_id = c.case_id) AS total
    FROM (SELECT * FROM case_interactions WHERE case_id = c.case_id ORDER BY created_at DESC LIMIT $2) e
) t
WHERE {{where}}
"""
_BY_ID = _DETAIL.format(where="c.case_id = $1")
_BY_SHORT_ID = _DETAIL.format(where="c.short_id = $1")

_ROW_COLUMNS = """c.case_id, c.short_id, c.status, c.subject, c.priority, c.category,
       c.owner_slack_user_id AS owner, cu.email AS customer_email, c.created_at"""

# count(*) OVER () is taken before LIMIT: the number of all matches, of which LIMIT are returned.
_BY_EMAIL = f"""
SELECT {_ROW_COLUMNS}, count(*) OVER () AS total
FROM customers cu JOIN cases c USING (customer_id)
WHERE lower(cu.email) = lower($1)
ORDER BY c.created_at DESC
LIMIT $2
"""

# The match must repeat the expression of cases_search_idx (0002) to use it. The newest matches
# are ranked, not all of them: ranking re-parses each case's text, and a common word can match
# thousands. The summary is not in the index; it only helps the ranking.
_WORDS_CANDIDATES = 200
_BY_WORDS = f"""
WITH q AS (SELECT websearch_to_tsquery('simple', $1) AS q),
candidates AS (
    SELECT c.case_id, count(*) OVER () AS total
    FROM cases c, q
    WHERE to_tsvector('simple', coalesce(c.subject, '') || ' ' || c.description) @@ q.q
    ORDER BY c.created_at DESC
    LIMIT {_WORDS_CANDIDATES}
)
SELECT {_ROW_COLUMNS}, m.total
FROM candidates m JOIN cases c USING (case_id) JOIN customers cu USING (customer_id), q
ORDER BY ts_rank(to_tsvector('simple', coalesce(c.subject, '') || ' ' || coalesce(c.summary, '') || ' '
                             || c.description), q.q) DESC,
         c.created_at DESC
LIMIT $2
"""

# Open cases are the ones not in $3 (the states nobody needs to act on); most recently touched first.
_MINE = f"""
SELECT {_ROW_COLUMNS}, count(*) OVER () AS total
FROM cases c JOIN customers cu USING (customer_id)
WHERE c.owner_slack_user_id = $1 AND c.status <> ALL($3::text[])
ORDER BY c.updated_at DESC, c.short_id DESC
LIMIT $2
"""

# A case waits for review since its latest move into awaiting_review (it may have been there
# before); its creation stands in for a case with no recorded move.
_QUEUE = """
WITH waiting AS (
    SELECT c.short_id, c.subject,
           coalesce((SELECT max(i.created_at) FROM case_interactions i
                     WHERE i.case_id = c.case_id AND i.interaction_type = 'status_change'
                       AND i.to_status = 'awaiting_review'), c.created_at) AS since
    FROM cases c
    WHERE c.status = 'awaiting_review'
), oldest AS (
    SELECT short_id, subject, since FROM waiting ORDER BY since, short_id LIMIT 1
)
SELECT (SELECT count(*) FROM waiting) AS awaiting_review,
       (SELECT count(*) FROM cases WHERE status = 'human_owned') AS human_owned,
       (SELECT count(*) FROM cases WHERE status = 'escalated') AS escalated,
       (SELECT short_id FROM oldest) AS oldest_short_id,
       (SELECT subject FROM oldest) AS oldest_subject,
       (SELECT since FROM oldest) AS oldest_waiting_since
"""

# Moves are counted per case, so a case bounced twice through review counts once.
_DAY = """
SELECT
    (SELECT count(*) FROM cases WHERE created_at >= $1) AS created,
    count(DISTINCT case_id) FILTER (WHERE to_status = 'replied') AS replied,
    (SELECT count(DISTINCT case_id) FROM reply_outbox
      WHERE status = 'sent' AND approved_by IS NULL AND sent_at >= $1) AS auto_sent,
    count(DISTINCT case_id) FILTER (WHERE to_status = 'awaiting_review') AS sent_to_review,
    count(DISTINCT case_id) FILTER (WHERE to_status = 'escalated') AS escalated
FROM case_interactions
WHERE interaction_type = 'status_change' AND created_at >= $1
"""

_SHARED = """
SELECT a.article_id, ch.chunk_id, a.title, a.url, ch.content,
       tsvector_to_array(to_tsvector('english', $3)) AS lexemes
FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS s(article_id, chunk_id, n)
JOIN kb_articles a ON a.article_id = s.article_id AND a.status = 'published'
JOIN kb_chunks ch ON ch.chunk_id = s.chunk_id AND ch.article_id = s.article_id
ORDER BY s.n
"""


async def case_by_id(conn: Connection, case_id: UUID, timeline: int) -> CaseFacts | None:
    return _facts(await conn.fetchrow(_BY_ID, case_id, timeline))


async def case_by_short_id(conn: Connection, short_id: int, timeline: int) -> CaseFacts | None:
    return _facts(await conn.fetchrow(_BY_SHORT_ID, short_id, timeline))


async def cases_by_email(conn: Connection, email: str, limit: int) -> tuple[list[CaseRow], int]:
    """The customer's latest cases, and how many they have in all."""
    return _rows(await conn.fetch(_BY_EMAIL, email, limit))


async def cases_by_words(conn: Connection, words: str, limit: int) -> tuple[list[CaseRow], int]:
    """The best matches of web-search syntax ("phrase", or, -word) over subject and description,
    and how many cases match (counted up to _WORDS_CANDIDATES)."""
    return _rows(await conn.fetch(_BY_WORDS, words, limit))


async def open_cases_of(conn: Connection, slack_user: str, limit: int,
                        done: Sequence[str]) -> tuple[list[CaseRow], int]:
    """The cases the Slack user owns that are in none of the `done` states, last changed first,
    and how many there are."""
    return _rows(await conn.fetch(_MINE, slack_user, limit, list(done)))


async def queue_counts(conn: Connection) -> QueueCounts:
    row = await conn.fetchrow(_QUEUE)
    assert row is not None  # a SELECT of scalar subqueries, without FROM, always returns one row
    return QueueCounts(**dict(row))


async def day_counts(conn: Connection, since: datetime) -> DayCounts:
    """What happened since `since` (the start of the desk's day): App Home's "Today"."""
    row = await conn.fetchrow(_DAY, since)
    assert row is not None  # an aggregate without GROUP BY always returns one row
    return DayCounts(**dict(row))


async def shared_articles(
    conn: Connection, refs: Sequence[tuple[UUID, UUID]], query: str
) -> list[SharedArticle]:
    """The (article, chunk) pairs still published, in the given order, each with its snippet for `query`."""
    rows = await conn.fetch(_SHARED, [a for a, _ in refs], [c for _, c in refs], query)
    return [
        SharedArticle(article_id=r["article_id"], chunk_id=r["chunk_id"], title=r["title"], url=r["url"],
                      snippet=snippet(r["content"], r["lexemes"]))
        for r in rows
    ]


def _facts(row: asyncpg.Record | None) -> CaseFacts | None:
    if row is None:
        return None
    values = dict(row)
    entries = values["timeline"]
    entries = json.loads(entries) if isinstance(entries, str) else entries
    values["timeline"] = [
        TimelineRow(**{**entry, "at": datetime.fromtimestamp(float(entry["at"]), UTC)}) for entry in entries
    ]
    return CaseFacts(**values)


def _rows(records: Sequence[asyncpg.Record]) -> tuple[list[CaseRow], int]:
    total = records[0]["total"] if records else 0
    return [CaseRow(**{k: v for k, v in r.items() if k != "total"}) for r in records], total

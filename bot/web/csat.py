"""GET /csat/{token}?score=N: the page a rating link in a reply opens. It stores the score and
thanks the customer; a later click on another of the links changes the score, the same one again
changes nothing. Its answers are small HTML pages, errors included: a customer's browser reads
them, not a program, so there is no JSON here.

A GET that changes something is what a link in an email can do: one click, no form. It is safe to
repeat (the same score twice is one effect), and HEAD is refused so that link checkers asking for
headers only change nothing. A scanner that follows every link with GET would store its last
one; the next click by the customer puts their own score back."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

import structlog
from aiohttp import web

from bot.web.http import DEPS
from pipelines.lifecycle.csat import SCORES, Rating, RatingOutcome, rate
from pipelines.lifecycle.csat_token import InvalidToken, Rejection

log = structlog.get_logger(__name__)

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token is in the URL
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}
_STYLE = ("body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}"
          "a{margin-right:.6rem}strong{font-size:1.2rem}")


def _page(status: int, company: str, title: str, paragraphs: list[str]) -> web.Response:
    """`paragraphs` are HTML of our own; anything from outside is escaped before it gets there."""
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    html = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{escape(title)} · {escape(company)}</title><style>{_STYLE}</style></head>"
            f"<body><h1>{escape(title)}</h1>{body}</body></html>")
    return web.Response(status=status, text=html, content_type="text/html", charset="utf-8", headers=_HEADERS)


_REFUSALS = {
    Rejection.MALFORMED: (400, "This rating link is not valid"),
    Rejection.FORGED: (400, "This rating link is not valid"),
    Rejection.EXPIRED: (410, "This rating link has expired"),
}


async def csat_page(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    company = deps.settings.company_name
    key = deps.settings.csat_key
    if key is None:
        return _page(404, company, "Ratings are not enabled", ["There is nothing to rate here."])
    raw = request.query.get("score", "")
    score = int(raw) if len(raw) == 1 and "0" <= raw <= "9" else None  # ASCII only: int() reads "４" too
    token = request.match_info["token"]
    try:
        if score is None:
            raise ValueError(raw)
        rating = await rate(deps.pool, token, score, key, datetime.now(UTC))
    except InvalidToken as exc:
        status, title = _REFUSALS[exc.why]
        log.info("csat.refused", why=exc.why.value)
        return _page(status, company, title,
                     ["Nothing was recorded. If you want to tell us how we did, reply to our email."])
    except ValueError:
        return _page(400, company, "Please pick a score from 1 to 5", ["Nothing was recorded."])
    if rating.outcome is RatingOutcome.NO_CASE:
        return _page(404, company, "We could not find this request", ["Nothing was recorded."])
    log.info("csat.rated", case_id=str(rating.case_id), score=rating.score, outcome=rating.outcome.value)
    return _page(200, company, "Thank you for your feedback", _thanks(rating))


def _thanks(rating: Rating) -> list[str]:
    ref = f"CX-{rating.short_id}"
    others = " ".join(f'<a href="?score={n}">{n}</a>' for n in SCORES if n != rating.score)
    return [
        f"You rated our reply to request {ref} <strong>{rating.score} out of 5</strong>.",
        f"Clicked the wrong one? Change it: {others}",
    ]


def add_routes(app: web.Application) -> None:
    app.router.add_get("/csat/{token}", csat_page, allow_head=False)

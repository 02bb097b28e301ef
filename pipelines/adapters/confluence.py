"""KnowledgeSource (and ArticlePages) over the Confluence Cloud REST API v1: page listing, storage-format
bodies and page creation, with Basic auth (account email + API token) and patience for Atlassian's
rate limits."""

from __future__ import annotations

import asyncio
import base64
import math
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp

from pipelines.ports import PageRef

RETRYABLE = frozenset({429, 503})


class ConfluenceError(Exception):
    """Confluence refused a request, or kept rate limiting it past our retries."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Confluence answered {status}: {message}")
        self.status = status
        self.message = message


class ConfluenceClient:
    def __init__(
        self,
        base_url: str,
        email: str,
        api_token: str,
        *,
        session: aiohttp.ClientSession | None = None,
        page_size: int = 50,
        max_retries: int = 5,
        max_wait: float = 60.0,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self._wiki = base_url.rstrip("/") + "/wiki"
        # A header per request, not session auth, because a caller-supplied session carries none
        # (and aiohttp.BasicAuth is deprecated from 3.14).
        token = base64.b64encode(f"{email}:{api_token}".encode()).decode()
        self._headers = {"Accept": "application/json", "Authorization": f"Basic {token}"}
        self._session = session
        self._owns_session = session is None
        self._page_size = page_size
        self._max_retries = max_retries
        self._max_wait = max_wait

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def list_pages(self, space_key: str) -> list[PageRef]:
        url: str | None = f"{self._wiki}/rest/api/content"
        params: dict[str, str] | None = {
            "spaceKey": space_key,
            "type": "page",
            "status": "current",
            "expand": "version,metadata.labels",
            "limit": str(self._page_size),
            "start": "0",
        }
        missing = f"space {space_key!r} does not exist, or this account cannot see it"
        # Offset paging can repeat a page when the space changes mid-listing; keep the first sighting.
        pages: dict[str, PageRef] = {}
        while url is not None:
            data = await self._get_json(url, params, missing)
            links = data.get("_links") or {}
            base = str(links.get("base") or self._wiki).rstrip("/")
            results = data.get("results") or []
            for item in results:
                page = _page_ref(item, base)
                pages.setdefault(page.id, page)
            nxt = links.get("next")
            # An empty page that still links onwards would otherwise loop forever.
            url = _resolve(base, str(nxt)) if nxt and results else None
            params = None  # the next link carries its own query
        return list(pages.values())

    async def page_html(self, page_id: str) -> str:
        data = await self._get_json(
            f"{self._wiki}/rest/api/content/{page_id}",
            {"expand": "body.storage"},
            f"page {page_id} does not exist, or this account cannot see it",
        )
        try:
            return str(data["body"]["storage"]["value"])
        except (KeyError, TypeError):
            raise ConfluenceError(200, f"page {page_id} came back without body.storage") from None

    async def create_page(self, space_key: str, title: str, storage_html: str) -> PageRef:
        body = {
            "type": "page",
            "title": title,
            "space": {"key": space_key},
            "body": {"storage": {"value": storage_html, "representation": "storage"}},
        }
        missing = f"space {space_key!r} does not exist, or this account cannot create pages in it"
        try:
            data = await self._send_json("POST", f"{self._wiki}/rest/api/content", None, body, missing)
        except ConfluenceError as exc:
            # Titles are unique within a space. A publish that created the page and died before
            # recording it finds the page again, instead of failing forever.
            if exc.status != 400 or "title already exists" not in exc.message.lower():
                raise
            existing = await self._page_titled(space_key, title)
            if existing is None:
                raise
            return existing
        base = str((data.get("_links") or {}).get("base") or self._wiki).rstrip("/")
        return _page_ref(data, base)

    async def _page_titled(self, space_key: str, title: str) -> PageRef | None:
        data = await self._get_json(
            f"{self._wiki}/rest/api/content",
            {"spaceKey": space_key, "title": title, "type": "page", "expand": "version,metadata.labels"},
            f"space {space_key!r} does not exist, or this account cannot see it",
        )
        base = str((data.get("_links") or {}).get("base") or self._wiki).rstrip("/")
        results = data.get("results") or []
        return _page_ref(results[0], base) if results else None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use rather than in __init__, so the client can be built outside a running loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        return self._session

    async def _get_json(self, url: str, params: dict[str, str] | None, not_found: str) -> dict[str, Any]:
        return await self._send_json("GET", url, params, None, not_found)

    async def _send_json(self, method: str, url: str, params: dict[str, str] | None, body: dict[str, Any] | None,
                         not_found: str) -> dict[str, Any]:
        session = self._client()
        attempt = 0
        while True:
            async with session.request(method, url, params=params, json=body, headers=self._headers) as resp:
                if 200 <= resp.status < 300:
                    data = await resp.json(content_type=None)
                    if not isinstance(data, dict):
                        raise ConfluenceError(resp.status, f"expected a JSON object from {url}")
                    return data
                if resp.status not in RETRYABLE or attempt >= self._max_retries:
                    raise ConfluenceError(resp.status, _explain(resp.status, await _detail(resp), not_found, attempt))
                wait = _retry_after(resp.headers.get("Retry-After"), attempt, self._max_wait)
            # Sleep after leaving the response so its connection goes back to the pool meanwhile.
            await asyncio.sleep(wait)
            attempt += 1


def _page_ref(item: dict[str, Any], base: str) -> PageRef:
    webui = (item.get("_links") or {}).get("webui")
    # metadata.labels is itself paged (200 a page); a support article with more labels than that is not real.
    labels = ((item.get("metadata") or {}).get("labels") or {}).get("results") or []
    return PageRef(
        id=str(item["id"]),
        title=str(item["title"]),
        version=int(item["version"]["number"]),
        url=base + webui if webui else None,
        labels=[str(label["name"]) for label in labels],
    )


def _resolve(base: str, link: str) -> str:
    """Confluence Cloud gives `next` relative to `_links.base` (which ends in /wiki); tolerate links that
    already carry the /wiki context or are absolute."""
    if link.startswith(("http://", "https://")):
        return link
    parts = urlsplit(base)
    context = parts.path.rstrip("/")
    if context and link.startswith(context + "/"):
        return f"{parts.scheme}://{parts.netloc}{link}"
    return base + (link if link.startswith("/") else "/" + link)


def _retry_after(header: str | None, attempt: int, max_wait: float) -> float:
    try:
        wait = float(header) if header is not None else math.nan
    except ValueError:
        wait = math.nan  # an HTTP-date or garbage: back off as if the header were absent
    if not math.isfinite(wait) or wait < 0:
        wait = float(2**attempt)
    return min(wait, max_wait)


async def _detail(resp: aiohttp.ClientResponse) -> str:
    text = await resp.text(errors="replace")
    try:
        data = await resp.json(content_type=None)
    except ValueError:
        return text.strip()[:300]
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])[:300]
    return text.strip()[:300]


def _explain(status: int, detail: str, not_found: str, retries: int) -> str:
    if status == 401:
        message = "the credentials were refused: check the account email and API token"
    elif status == 403:
        message = "permission denied: the account lacks access to this space or page"
    elif status == 404:
        message = not_found
    elif status in RETRYABLE:
        message = f"still rate limited or unavailable after {retries} retries"
    else:
        message = "request failed"
    return f"{message} ({detail})" if detail else message

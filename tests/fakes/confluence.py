"""A fake Confluence Cloud REST API v1 (/wiki/rest/api/content...) with real offset pagination, title
lookup, and page creation that refuses a second page with a title the space already has."""

from __future__ import annotations

import base64
import re
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from .base import FakeServer, RecordedRequest

API = "/wiki/rest/api"
MAX_LIMIT = 100  # Confluence caps `limit` silently; clients must follow `next`, not trust their own limit


def _error(code: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {
        "statusCode": code,
        "data": {"authorized": code not in (401, 403), "valid": True, "errors": [], "successful": False},
        "message": message,
    }
    return web.json_response(body, status=code, headers=headers)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class StoredPage:
    id: str
    space: str
    title: str
    html: str
    labels: list[str]
    version: int = 1
    when: str = field(default_factory=_now)

    @property
    def webui(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9]+", "+", self.title).strip("+")
        return f"/spaces/{self.space}/pages/{self.id}/{slug}"


class FakeConfluence(FakeServer):
    def __init__(
        self, *, email: str = "bot@example.com", api_token: str = "token", spaces: tuple[str, ...] = ("KB",)
    ) -> None:
        super().__init__()
        self.email, self.api_token = email, api_token
        self.spaces: set[str] = set(spaces)
        self.pages: dict[str, StoredPage] = {}
        # Real responses carry _links.base; turn it off to check clients fall back to their own base URL.
        self.send_links_base = True
        self._next_id = 98304
        self._script: deque[tuple[int, str | None]] = deque()

    # ---- scripting -------------------------------------------------------------------------------------------

    def fail_next(self, code: int = 503, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next `times` authenticated requests with `code`; retry_after=None leaves the header out."""
        self._script.extend([(code, retry_after)] * times)

    def rate_limit_next(self, times: int = 1, retry_after: str | None = "0") -> None:
        self.fail_next(429, times, retry_after)

    def add_space(self, key: str) -> None:
        self.spaces.add(key)

    def add_page(
        self, space: str, title: str, html: str, labels: list[str] | tuple[str, ...] = (), page_id: str | None = None
    ) -> str:
        if page_id is None:
            self._next_id += 1
            page_id = str(self._next_id)
        if page_id in self.pages:
            raise ValueError(f"page {page_id} already exists")
        self.spaces.add(space)
        self.pages[page_id] = StoredPage(page_id, space, title, html, list(labels))
        return page_id

    def update_page(self, page_id: str, html: str | None = None, title: str | None = None) -> int:
        page = self.pages[page_id]
        if html is not None:
            page.html = html
        if title is not None:
            page.title = title
        page.version += 1
        page.when = _now()
        return page.version

    def remove_page(self, page_id: str) -> None:
        del self.pages[page_id]

    # ---- plumbing --------------------------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get(f"{API}/content", self._list)
        app.router.add_post(f"{API}/content", self._create)
        app.router.add_get(f"{API}/content/{{id}}", self._get)

    def check_auth(self, rec: RecordedRequest) -> web.StreamResponse | None:
        expected = base64.b64encode(f"{self.email}:{self.api_token}".encode()).decode()
        if rec.header("Authorization") != f"Basic {expected}":
            return _error(401, "Client must be authenticated to access this resource.")
        if self._script:
            code, retry_after = self._script.popleft()
            headers = {"Retry-After": retry_after} if retry_after is not None else None
            message = "Rate limit exceeded." if code == 429 else "Service unavailable."
            return _error(code, message, headers)
        return None

    @property
    def base(self) -> str:
        return f"{self.url}/wiki"

    def _resource(self, page: StoredPage, expand: set[str]) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "id": page.id,
            "type": "page",
            "status": "current",
            "title": page.title,
            "_links": {
                "webui": page.webui,
                "tinyui": f"/x/{page.id}",
                "self": f"{self.base}/rest/api/content/{page.id}",
            },
            "_expandable": {"space": f"/rest/api/space/{page.space}"},
        }
        if "version" in expand:
            resource["version"] = {"number": page.version, "when": page.when, "minorEdit": False}
        else:
            resource["_expandable"]["version"] = ""
        if "metadata.labels" in expand:
            labels = [
                {"prefix": "global", "name": n, "id": str(1000 + i), "label": n} for i, n in enumerate(page.labels)
            ]
            resource["metadata"] = {"labels": {"results": labels, "start": 0, "limit": 200, "size": len(labels)}}
        else:
            resource["_expandable"]["metadata"] = ""
        if "body.storage" in expand:
            resource["body"] = {"storage": {"value": page.html, "representation": "storage"}}
        else:
            resource["_expandable"]["body"] = ""
        return resource

    # ---- endpoints -------------------------------------------------------------------------------------------

    async def _list(self, request: web.Request) -> web.Response:
        q = request.query
        space = q.get("spaceKey")
        if space is not None and space not in self.spaces:
            return _error(404, f"No space with key : {space}")
        try:
            start = max(0, int(q.get("start", "0")))
            limit = min(MAX_LIMIT, max(1, int(q.get("limit", "25"))))
        except ValueError:
            return _error(400, "start and limit must be integers")
        expand = set(filter(None, q.get("expand", "").split(",")))
        matches = [
            p
            for p in self.pages.values()
            if (space is None or p.space == space)
            and q.get("type", "page") == "page"
            and (q.get("title") is None or p.title == q.get("title"))
            and q.get("status", "current") == "current"
        ]
        chunk = matches[start : start + limit]
        links: dict[str, str] = {"context": "/wiki", "self": f"{self.base}/rest/api/content?{urlencode(q)}"}
        if self.send_links_base:
            links["base"] = self.base
        if start + len(chunk) < len(matches):
            links["next"] = f"/rest/api/content?{urlencode({**q, 'limit': str(limit), 'start': str(start + limit)})}"
        if start > 0:
            links["prev"] = (
                f"/rest/api/content?{urlencode({**q, 'limit': str(limit), 'start': str(max(0, start - limit))})}"
            )
        return web.json_response(
            {
                "results": [self._resource(p, expand) for p in chunk],
                "start": start,
                "limit": limit,
                "size": len(chunk),
                "_links": links,
            }
        )

    async def _create(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            space = str(body["space"]["key"])
            title = str(body["title"])
            storage = body["body"]["storage"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "Could not parse the content: expected type, title, space.key and body.storage")
        if body.get("type", "page") != "page" or storage.get("representation") != "storage" or not title.strip():
            return _error(400, "Only pages with a title and a storage-format body are supported")
        if space not in self.spaces:
            return _error(404, f"No space with key : {space}")
        if any(p.space == space and p.title == title for p in self.pages.values()):
            return _error(400, "A page with this title already exists: A page already exists with the same TITLE "
                               "in this space")
        page = self.pages[self.add_page(space, title, str(storage.get("value", "")))]
        resource = self._resource(page, {"version"})
        if self.send_links_base:
            resource["_links"]["base"] = self.base
        return web.json_response(resource)

    async def _get(self, request: web.Request) -> web.Response:
        page = self.pages.get(request.match_info["id"])
        if page is None:
            return _error(404, f"No content found with id: ContentId{{id={request.match_info['id']}}}")
        expand = set(filter(None, request.query.get("expand", "").split(",")))
        resource = self._resource(page, expand)
        if self.send_links_base:
            resource["_links"]["base"] = self.base
        return web.json_response(resource)

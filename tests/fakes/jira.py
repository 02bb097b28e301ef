"""A fake Jira Cloud REST API (/rest/api/{2,3,latest}/...) for the `jira` package."""

from __future__ import annotations

import base64
import re
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .base import FakeServer, Handler, Hang, RecordedRequest, Status, recorded, retry_headers

API = "/rest/api/{version:2|3|latest}"
ISSUE_TYPES: list[dict[str, Any]] = [
    {"id": "10001", "name": "Task", "subtask": False},
    {"id": "10002", "name": "Bug", "subtask": False},
    {"id": "10003", "name": "Story", "subtask": False},
]
FIELDS = [
    ("summary", "Summary", "string"),
    ("description", "Description", "string"),
    ("issuetype", "Issue Type", "issuetype"),
    ("project", "Project", "project"),
    ("labels", "Labels", "array"),
    ("priority", "Priority", "priority"),
    ("status", "Status", "status"),
    ("created", "Created", "datetime"),
    ("updated", "Updated", "datetime"),
    ("comment", "Comment", "comments-page"),
]
# One clause per match; the fake supports AND-ed clauses of these shapes and refuses anything else.
JQL_CLAUSE = re.compile(r'(summary|text)\s*~\s*"([^"]*)"|(project|key|status|labels)\s*=\s*"?([\w -]+?)"?', re.I)


@dataclass(frozen=True)
class _Fault:
    answer: Status | Hang
    only: str | None  # "METHOD /path"; None matches any request
    handled: bool = False  # a Hang after the request took effect: the answer is lost, the work is not


def _errors(code: int, messages: list[str] | None = None, errors: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"errorMessages": messages or [], "errors": errors or {}}, status=code)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


class FakeJira(FakeServer):
    def __init__(
        self, *, email: str = "bot@example.com", api_token: str = "token", projects: tuple[str, ...] = ("DEV",)
    ) -> None:
        super().__init__()
        self.email, self.api_token = email, api_token
        self.projects: dict[str, dict[str, Any]] = {
            key: {"id": str(10000 + i), "key": key, "name": f"{key} project", "projectTypeKey": "software"}
            for i, key in enumerate(projects)
        }
        self.issues: dict[str, dict[str, Any]] = {}
        self._next_id = 10000
        self._faults: deque[_Fault] = deque()
        self.account = {
            "accountId": "5b10ac8d82e05b22cc7d4ef5",
            "emailAddress": email,
            "displayName": "CX Bot",
            "active": True,
            "accountType": "atlassian",
        }

    # ---- scripting -------------------------------------------------------------------------------------------

    def fail_next(
        self, code: int = 503, times: int = 1, *, retry_after: float | None = None, only: str | None = None
    ) -> None:
        """Answer the next `times` requests that pass the credentials check with `code`. `only` ("POST /rest/api/2/issue") lets
        other requests through first; retry_after=None leaves the header out."""
        self._faults.extend([_Fault(Status(code, retry_after), only)] * times)

    def hang_next(self, seconds: float, *, only: str | None = None, handled: bool = False) -> None:
        """Stall the next matching request, so the client hits its own timeout. handled=True lets the request
        take effect first, as when Jira creates the issue but its answer never arrives."""
        self._faults.append(_Fault(Hang(seconds), only, handled))

    # ---- plumbing --------------------------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        app.middlewares.append(self._faulting)
        r = app.router
        r.add_get(f"{API}/serverInfo", self._server_info)
        r.add_get(f"{API}/myself", self._myself)
        r.add_get(f"{API}/field", self._fields)
        r.add_get(f"{API}/issuetype", self._issue_types)
        r.add_get(f"{API}/project", self._project_list)
        r.add_get(f"{API}/project/{{key}}", self._project)
        r.add_post(f"{API}/issue", self._create)
        r.add_get(f"{API}/issue/{{key}}", self._get)
        r.add_put(f"{API}/issue/{{key}}", self._edit)
        r.add_get(f"{API}/issue/{{key}}/comment", self._comments)
        r.add_post(f"{API}/issue/{{key}}/comment", self._comment)
        for path in ("search", "search/jql"):
            r.add_get(f"{API}/{path}", self._search)
            r.add_post(f"{API}/{path}", self._search)

    def check_auth(self, rec: RecordedRequest) -> web.StreamResponse | None:
        if rec.path.endswith("/serverInfo"):
            return None  # anonymous on real Jira too, and the client calls it from its constructor
        auth = rec.header("Authorization") or ""
        expected = base64.b64encode(f"{self.email}:{self.api_token}".encode()).decode()
        if auth != f"Basic {expected}":
            return _errors(401, ["Client must be authenticated to access this resource."])
        return None

    @web.middleware
    async def _faulting(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Runs inside the recording middleware, so a faulted request is still recorded (and auth still comes first).
        head = self._faults[0] if self._faults else None
        if head is None or head.only not in (None, f"{request.method} {request.path}"):
            return await handler(request)
        self._faults.popleft()
        if isinstance(head.answer, Hang):
            response = await handler(request) if head.handled else _errors(504, ["hang ended"])
            await self.stall(head.answer.seconds)
            return response
        message = "Rate limit exceeded." if head.answer.code == 429 else "Service unavailable."
        response = _errors(head.answer.code, [message])
        response.headers.update(retry_headers(head.answer.retry_after))
        return response

    def _self(self, *parts: str) -> str:
        return f"{self.url}/rest/api/2/{'/'.join(parts)}"

    def _lookup(self, key_or_id: str) -> dict[str, Any] | None:
        return self.issues.get(key_or_id) or next((i for i in self.issues.values() if i["id"] == key_or_id), None)

    def _find_project(self, ref: dict[str, Any] | str | None) -> dict[str, Any] | None:
        if isinstance(ref, dict):
            ref = ref.get("key") or ref.get("id")
        return next((p for p in self.projects.values() if ref in (p["key"], p["id"])), None)

    # ---- endpoints -------------------------------------------------------------------------------------------

    async def _server_info(self, request: web.Request) -> web.Response:
        # deploymentType "Cloud" makes jira>=3.9 search through /search/jql, as it must against real Jira Cloud.
        return web.json_response(
            {
                "baseUrl": self.url,
                "version": "1001.0.0-SNAPSHOT",
                "versionNumbers": [1001, 0, 0],
                "deploymentType": "Cloud",
                "buildNumber": 100000,
                "serverTitle": "Fake Jira",
            }
        )

    async def _myself(self, request: web.Request) -> web.Response:
        return web.json_response({**self.account, "self": self._self("user")})

    async def _fields(self, request: web.Request) -> web.Response:
        return web.json_response(
            [
                {
                    "id": fid,
                    "key": fid,
                    "name": name,
                    "custom": False,
                    "orderable": True,
                    "navigable": True,
                    "searchable": True,
                    "clauseNames": [fid],
                    "schema": {"type": kind, "system": fid},
                }
                for fid, name, kind in FIELDS
            ]
        )

    async def _issue_types(self, request: web.Request) -> web.Response:
        return web.json_response([{**t, "self": self._self("issuetype", t["id"])} for t in ISSUE_TYPES])

    def _project_resource(self, project: dict[str, Any]) -> dict[str, Any]:
        return {**project, "self": self._self("project", project["id"]), "issueTypes": ISSUE_TYPES}

    async def _project_list(self, request: web.Request) -> web.Response:
        return web.json_response([self._project_resource(p) for p in self.projects.values()])

    async def _project(self, request: web.Request) -> web.Response:
        project = self._find_project(request.match_info["key"])
        if project is None:
            return _errors(404, [f"No project could be found with key '{request.match_info['key']}'."])
        return web.json_response(self._project_resource(project))

    async def _create(self, request: web.Request) -> web.Response:
        fields = dict((recorded(request).json or {}).get("fields", {}))
        project = self._find_project(fields.get("project"))
        issue_type = fields.get("issuetype") or {}
        issue_type = next(
            (t for t in ISSUE_TYPES if issue_type.get("name") == t["name"] or issue_type.get("id") == t["id"]), None
        )
        problems = {}
        if project is None:
            problems["project"] = "valid project is required"
        if issue_type is None:
            problems["issuetype"] = "valid issue type is required"
        if not fields.get("summary"):
            problems["summary"] = "You must specify a summary of the issue."
        if problems:
            return _errors(400, errors=problems)
        assert project is not None
        self._next_id += 1
        project_issues = [i for i in self.issues.values() if i["fields"]["project"]["id"] == project["id"]]
        key = f"{project['key']}-{len(project_issues) + 1}"
        now = _now()
        fields.update(
            project={**project, "self": self._self("project", project["id"])},
            issuetype=issue_type,
            status={"name": "To Do", "statusCategory": {"key": "new"}},
            created=now,
            updated=now,
            labels=fields.get("labels", []),
            comment={"comments": [], "maxResults": 0, "total": 0, "startAt": 0},
        )
        issue = {
            "id": str(self._next_id),
            "key": key,
            "self": self._self("issue", str(self._next_id)),
            "fields": fields,
        }
        self.issues[key] = issue
        return web.json_response({"id": issue["id"], "key": key, "self": issue["self"]}, status=201)

    async def _get(self, request: web.Request) -> web.Response:
        issue = self._lookup(request.match_info["key"])
        if issue is None:
            return _errors(404, ["Issue does not exist or you do not have permission to see it."])
        return web.json_response(issue)

    async def _edit(self, request: web.Request) -> web.Response:
        issue = self._lookup(request.match_info["key"])
        if issue is None:
            return _errors(404, ["Issue does not exist or you do not have permission to see it."])
        issue["fields"].update((recorded(request).json or {}).get("fields", {}), updated=_now())
        return web.Response(status=204)

    async def _comments(self, request: web.Request) -> web.Response:
        issue = self._lookup(request.match_info["key"])
        if issue is None:
            return _errors(404, ["Issue does not exist or you do not have permission to see it."])
        return web.json_response(issue["fields"]["comment"])

    async def _comment(self, request: web.Request) -> web.Response:
        issue = self._lookup(request.match_info["key"])
        if issue is None:
            return _errors(404, ["Issue does not exist or you do not have permission to see it."])
        self._next_id += 1
        now = _now()
        comment = {
            "id": str(self._next_id),
            "self": self._self("issue", issue["id"], "comment", str(self._next_id)),
            "body": (recorded(request).json or {}).get("body", ""),
            "author": self.account,
            "created": now,
            "updated": now,
        }
        page = issue["fields"]["comment"]
        page["comments"].append(comment)
        page["total"] = page["maxResults"] = len(page["comments"])
        return web.json_response(comment, status=201)

    async def _search(self, request: web.Request) -> web.Response:
        rec = recorded(request)
        params = {**rec.query, **(rec.json if isinstance(rec.json, dict) else {})}
        jql = re.split(r"\border\s+by\b", str(params.get("jql", "")), flags=re.I)[0].strip()
        matches = list(self.issues.values())
        for clause in filter(None, (c.strip() for c in re.split(r"\bAND\b", jql, flags=re.I))):
            m = JQL_CLAUSE.fullmatch(clause)
            if m is None:
                return _errors(400, [f"FakeJira does not understand the JQL clause {clause!r}"])
            if m.group(1):
                searched = ("summary",) if m.group(1).lower() == "summary" else ("summary", "description")
                needle = m.group(2).lower()
                matches = [i for i in matches if any(needle in str(i["fields"].get(f) or "").lower() for f in searched)]
            else:
                field, value = m.group(3).lower(), m.group(4).strip()
                pick = {
                    "project": lambda i: [i["fields"]["project"]["key"]],
                    "key": lambda i: [i["key"]],
                    "status": lambda i: [i["fields"]["status"]["name"]],
                    "labels": lambda i: i["fields"].get("labels") or [],  # `labels = x`: x is one of them
                }[field]
                matches = [i for i in matches if value.lower() in (v.lower() for v in pick(i))]
        size = int(params.get("maxResults", 50))
        if rec.path.endswith("/jql"):
            return web.json_response({"issues": matches[:size], "isLast": True})
        return web.json_response({"issues": matches[:size], "startAt": 0, "maxResults": size, "total": len(matches)})

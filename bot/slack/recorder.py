"""A Slack Web API client that records calls instead of making them: `cx demo` and `cx report daily
--out` show, offline, exactly what the product would send to Slack (one JSON file per call)."""

from __future__ import annotations

import json
import json as json_module  # api_call's `json` argument shadows the module there
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from slack_sdk.web.file_upload_v2_result import FileUploadV2Result

BLOCK_KIT_BUILDER = "https://app.slack.com/block-kit-builder/#"


class RecordingSlack(AsyncWebClient):
    """Every Web API method of the real client goes through `api_call`; here it records the method
    and its arguments (the keyword arguments the product passed, as slack_sdk serialises them)
    and answers like Slack would, with made-up timestamps."""

    def __init__(self, channels: Sequence[str] = ()) -> None:
        super().__init__(token="xoxb-recording")
        self.calls: list[dict[str, Any]] = []
        self._ts = 1_700_000_000
        self._files = 0
        # What conversations.list answers: these channel names, under made-up ids.
        self._channels = [{"id": f"C0RECORDED{n}", "name": name.removeprefix("#")} for n, name in enumerate(channels, 1)]

    async def api_call(self, api_method: str, *, http_verb: str = "POST", files: dict[str, Any] | None = None,
                       data: Any = None, params: dict[str, Any] | None = None,
                       json: dict[str, Any] | None = None,  # noqa: A002
                       headers: dict[str, Any] | None = None, auth: dict[str, Any] | None = None) -> AsyncSlackResponse:
        args = {k: v for k, v in {**(params or {}), **(data or {}), **(json or {})}.items() if v is not None}
        self.calls.append({"method": api_method, "args": args})
        self._ts += 1
        answer: dict[str, Any] = {"ok": True}
        if api_method == "chat.postMessage":
            answer |= {"channel": args.get("channel"), "ts": f"{self._ts}.000100"}
        elif api_method == "conversations.list":
            answer |= {"channels": self._channels, "response_metadata": {"next_cursor": ""}}
        elif api_method == "files.getUploadURLExternal":
            self._files += 1
            file_id = f"F0RECORDED{self._files}"
            answer |= {"file_id": file_id, "upload_url": f"https://files.invalid/upload/{file_id}"}
        elif api_method == "files.completeUploadExternal":
            files = args.get("files")
            listed = json_module.loads(files) if isinstance(files, str) else files or []
            answer |= {"files": [{"id": f["id"], "title": f.get("title")} for f in listed]}
        return AsyncSlackResponse(client=self, http_verb=http_verb, api_url=api_method, req_args={}, data=answer,
                                  headers={}, status_code=200)

    async def _upload_file(self, *, url: str, data: bytes, **kwargs: Any) -> FileUploadV2Result:
        """files_upload_v2's upload itself: recorded as the call `upload` with its size, sent nowhere."""
        self.calls.append({"method": "upload", "args": {"url": url, "bytes": len(data)}})
        return FileUploadV2Result(status=200, body=f"OK - {len(data)}")

    def write(self, out: Path) -> list[Path]:
        """One `NNNN-method.json` per call, in order, and `summary.json` with the count per method."""
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for n, call in enumerate(self.calls, 1):
            path = out / f"{n:04d}-{call['method']}.json"
            path.write_text(json.dumps(call, indent=2, ensure_ascii=False, default=str) + "\n")
            written.append(path)
        counts: dict[str, int] = {}
        for call in self.calls:
            counts[call["method"]] = counts.get(call["method"], 0) + 1
        (out / "summary.json").write_text(json.dumps({"calls": len(self.calls), "by_method": counts}, indent=2) + "\n")
        return written


def block_kit_builder_link(blocks: list[dict[str, Any]]) -> str:
    """A link that opens the blocks in Slack's Block Kit Builder (the payload rides in the fragment)."""
    return BLOCK_KIT_BUILDER + quote(json.dumps({"blocks": blocks}, separators=(",", ":")), safe="")

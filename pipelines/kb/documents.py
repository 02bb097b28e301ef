"""Knowledge-base articles from files: Markdown with front matter, HTML, plain text and JSONL,
chunked along headings. Pure: no database, no embeddings."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import html2text
import yaml
from pydantic import BaseModel, Field, ValidationError

SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html", ".txt": "text",
            ".jsonl": "jsonl"}
# About 300 tokens a chunk (1.3 tokens a word for English) with a 40-word overlap: small enough
# that the best chunk is a precise citation, large enough to hold a whole answer.
CHUNK_WORDS = 230
OVERLAP_WORDS = 40
_HEADING = re.compile(r"^(#{1,4})\s+(.+?)\s*#*\s*$")


class KbFileError(ValueError):
    """A file that cannot be imported; the message names the file and, where known, the line."""

    def __init__(self, path: Path, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")


class ArticleMeta(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    category: str | None = None
    subcategory: str | None = None
    tags: list[str] = []
    url: str | None = None


class JsonlArticle(ArticleMeta):
    body: str = Field(min_length=1)
    id: str | None = None


@dataclass(frozen=True)
class Article:
    source: str  # import | confluence
    source_id: str
    meta: ArticleMeta
    body: str  # Markdown-ish text, headings as `#` lines

    @property
    def content_hash(self) -> str:
        return _hash(self.meta.model_dump_json(), self.body)


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    heading: str  # "Article title › Section"
    content: str
    token_count: int

    @property
    def content_hash(self) -> str:
        return _hash(self.heading, self.content)

    @property
    def embedding_text(self) -> str:
        return embedding_text(self.heading, self.content)


def embedding_text(heading: str, content: str) -> str:
    """What a chunk's vector is computed from: its heading path, then its text."""
    return f"{heading}\n\n{content}"


def _hash(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def html_to_text(html: str) -> str:
    converter = html2text.HTML2Text()
    converter.body_width = 0  # no hard wrapping: chunks are split by words, not lines
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.protect_links = True
    return converter.handle(html).strip()


def _split_front_matter(path: Path, text: str) -> tuple[dict[str, object], str]:
    if not text.startswith("---"):
        return {}, text
    end = text.find("\n---", 3)
    if end < 0:
        raise KbFileError(path, "front matter starts with --- but never ends", line=1)
    try:
        meta = yaml.safe_load(text[3:end]) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise KbFileError(path, f"front matter is not valid YAML ({getattr(exc, 'problem', exc)})",
                          line=mark.line + 1 if mark else 1) from None
    if not isinstance(meta, dict):
        raise KbFileError(path, "front matter must be a mapping of keys to values", line=2)
    return meta, text[end + 4 :].lstrip("\n")


def _meta(path: Path, raw: dict[str, object], line: int | None = None) -> ArticleMeta:
    try:
        return ArticleMeta.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise KbFileError(path, problems, line=line) from None


def _first_heading(body: str) -> tuple[str | None, str]:
    lines = body.splitlines()
    for i, line in enumerate(lines):
        if line.strip():
            match = _HEADING.match(line)
            if match and len(match.group(1)) == 1:
                return match.group(2), "\n".join(lines[i + 1 :]).lstrip("\n")
            return None, body
    return None, body


def read_file(path: Path, root: Path | None = None) -> list[Article]:
    """The articles in one file (JSONL holds many). Raises KbFileError naming the file and line."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise KbFileError(path, f"unsupported file type {path.suffix!r} (use {', '.join(sorted(SUFFIXES))})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise KbFileError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    source_id = str(path.relative_to(root)) if root is not None else path.name
    if kind == "jsonl":
        return list(_read_jsonl(path, text, source_id))
    if kind == "html":
        title_match = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        body = html_to_text(text)
        heading, rest = _first_heading(body)
        title = (title_match.group(1).strip() if title_match else None) or heading or path.stem
        return [Article("import", source_id, _meta(path, {"title": title}), rest if heading else body)]
    meta, body = _split_front_matter(path, text) if kind == "markdown" else ({}, text)
    if "title" not in meta:
        heading, rest = _first_heading(body)
        if heading:
            meta, body = {**meta, "title": heading}, rest
        else:
            meta = {**meta, "title": path.stem.replace("-", " ").replace("_", " ").capitalize()}
    if not body.strip():
        raise KbFileError(path, "the article has no body")
    return [Article("import", source_id, _meta(path, meta), body.strip())]


def _read_jsonl(path: Path, text: str, source_id: str) -> Iterator[Article]:
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise KbFileError(path, f"not valid JSON ({exc.msg})", line=number) from None
        if not isinstance(raw, dict):
            raise KbFileError(path, "each line must be a JSON object", line=number)
        try:
            item = JsonlArticle.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise KbFileError(path, problems, line=number) from None
        key = item.id or item.title
        if key in seen:
            raise KbFileError(path, f"line {seen[key]} already has the {'id' if item.id else 'title'} {key!r}; "
                                    "give each article its own `id`", line=number)
        seen[key] = number
        meta = ArticleMeta.model_validate(item.model_dump(include=set(ArticleMeta.model_fields)))
        yield Article("import", f"{source_id}#{key}", meta, item.body.strip())


def collect(paths: list[Path]) -> list[tuple[Path, Path | None]]:
    """Files to import, each with the directory it was found under. An article is known by its
    path inside that directory (or its file name when given directly), so importing a folder or
    one file of it again updates the same article; two files with one such name are refused."""
    found: list[tuple[Path, Path | None]] = []
    for path in paths:
        if path.is_dir():
            found += [(p, path) for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in SUFFIXES]
        elif path.is_file():
            found.append((path, None))
        else:
            raise KbFileError(path, "no such file or directory")
    names: dict[str, Path] = {}
    for path, root in found:
        name = str(path.relative_to(root)) if root is not None else path.name
        if name in names and names[name].resolve() != path.resolve():
            raise KbFileError(path, f"{names[name]} has the same name; import their folders instead")
        names[name] = path
    return found


def _sections(body: str) -> list[tuple[str | None, str]]:
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in body.splitlines():
        match = _HEADING.match(line)
        if match:
            sections.append((match.group(2).strip(), []))
        else:
            sections[-1][1].append(line)
    return [(h, "\n".join(lines).strip()) for h, lines in sections if "\n".join(lines).strip()]


def _windows(text: str) -> list[str]:
    """Windows of at most CHUNK_WORDS words, OVERLAP_WORDS shared with the previous one, ending
    at a paragraph break when one falls in the second half of the window. Line breaks are kept,
    so numbered steps stay one per line."""
    words: list[str] = []
    ends: dict[int, str] = {}  # word position -> the break after it
    for paragraph in re.split(r"\n\s*\n", text):
        for line in paragraph.splitlines():
            if line.split():
                words += line.split()
                ends[len(words)] = "\n"
        if words and len(words) in ends:
            ends[len(words)] = "\n\n"
    out: list[str] = []
    start = 0
    while start < len(words):
        end = min(start + CHUNK_WORDS, len(words))
        if end < len(words):
            paragraph_ends = (b for b, kind in ends.items() if kind == "\n\n" and start + CHUNK_WORDS // 2 < b <= end)
            end = max(paragraph_ends, default=end)
        out.append("".join(w + ends.get(i + 1, " ") for i, w in enumerate(words[start:end], start)).strip())
        if end == len(words):
            break
        start = end - OVERLAP_WORDS
    return out


def chunk(article: Article) -> list[Chunk]:
    title = article.meta.title
    out: list[Chunk] = []
    for heading, text in _sections(article.body) or [(None, article.body)]:
        path = f"{title} › {heading}" if heading else title
        for window in _windows(text):
            out.append(Chunk(len(out), path, window, round(len(window.split()) * 1.3)))
    return out

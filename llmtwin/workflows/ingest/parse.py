"""Parse one object's bytes into text, per file type; anything else is reported, never guessed."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import PurePosixPath

from bs4 import BeautifulSoup
from pypdf import PdfReader
from pypdf.errors import PdfReadError

from llmtwin.api.errors import ReasonedError

SUFFIX_TYPES = {
    ".txt": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".json": "json",
    ".jsonl": "jsonl",
}
POST_TEXT_FIELDS = ("text", "body", "content", "message")


class DocumentRejected(ReasonedError):
    """The object cannot become text; `reason` is a short machine-friendly word (not-utf8, corrupt, ...)."""


@dataclass(frozen=True)
class ParsedDocument:
    title: str
    text: str
    file_type: str


def file_type_of(key: str) -> str | None:
    return SUFFIX_TYPES.get(PurePosixPath(key).suffix.lower())


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentRejected("not-utf8", f"byte {exc.start} is not valid UTF-8") from exc


def _title_from_text(text: str, fallback: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:200]
    return fallback


def parse(key: str, data: bytes, allowed: list[str]) -> ParsedDocument:
    kind = file_type_of(key)
    stem = PurePosixPath(key).stem
    if kind is None or kind not in allowed:
        raise DocumentRejected("unsupported", f"file type of {PurePosixPath(key).name!r} is not in {allowed}")
    if not data.strip():
        raise DocumentRejected("empty", "the object has no content")
    if kind in ("txt", "md"):
        text = _decode(data)
        title = _title_from_text(text, stem)
    elif kind == "html":
        soup = BeautifulSoup(_decode(data), "html.parser")
        for tag in soup(["script", "style", "nav", "footer", "header", "aside"]):
            tag.decompose()
        title = soup.title.get_text(strip=True) if soup.title else ""
        heading = soup.find(["h1", "h2"])
        title = title or (heading.get_text(strip=True) if heading else stem)
        text = soup.get_text("\n")
    elif kind == "pdf":
        try:
            reader = PdfReader(io.BytesIO(data))
            text = "\n".join(page.extract_text() or "" for page in reader.pages)
            title = (reader.metadata.title if reader.metadata else None) or _title_from_text(text, stem)
        except (PdfReadError, ValueError, KeyError, TypeError) as exc:
            raise DocumentRejected("corrupt", f"PDF cannot be read: {exc}") from exc
    else:
        text, title = _parse_posts(_decode(data), kind, stem)
    if not text.strip():
        raise DocumentRejected("empty", "no text could be extracted")
    return ParsedDocument(title=title, text=text, file_type=kind)


def _parse_posts(raw: str, kind: str, stem: str) -> tuple[str, str]:
    """JSON: a post object or a list of posts; JSONL: one post per line. A post has a text field."""
    try:
        if kind == "jsonl":
            posts = [json.loads(line) for line in raw.splitlines() if line.strip()]
        else:
            loaded = json.loads(raw)
            posts = loaded if isinstance(loaded, list) else [loaded]
    except json.JSONDecodeError as exc:
        raise DocumentRejected("corrupt", f"invalid {kind.upper()} at line {exc.lineno}: {exc.msg}") from exc
    parts = []
    for post in posts:
        if not isinstance(post, dict):
            continue
        body = next((post[f] for f in POST_TEXT_FIELDS if isinstance(post.get(f), str)), "")
        if body.strip():
            heading = post.get("title")
            parts.append(f"{heading}\n{body}" if isinstance(heading, str) and heading else body)
    if not parts:
        raise DocumentRejected("empty", f"no post has one of the fields {POST_TEXT_FIELDS}")
    first = posts[0] if isinstance(posts[0], dict) else {}
    return "\n\n".join(parts), str(first.get("title") or stem)[:200]

"""Parse one object's bytes into documents, per file type; anything else is reported, never guessed.

A file is one document, except an export of posts (JSON/JSONL): each post with text is its own document
with a deterministic id, so re-ingesting the export changes nothing and an edited post changes only its
own chunks. Text is decoded in whatever encoding it was saved in (charset-normalizer); HTML is reduced to
its main content (trafilatura: no navigation, cookie banners, footers, scripts); markdown front matter
becomes metadata, not text.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from llmtwin.api.errors import ReasonedError
from llmtwin.api.timestamps import unix_seconds
from llmtwin.api.v1alpha1 import file_type_of

POST_TEXT_FIELDS = ("text", "body", "content", "message")
POST_ID_FIELDS = ("id", "post_id", "guid", "uuid", "url", "link", "permalink", "slug")
POST_TITLE_FIELDS = ("title", "subject")
DATE_FIELDS = ("date", "published", "published_at", "publishedAt", "created_at", "createdAt", "created", "timestamp")
POST_META_FIELDS = ("url", "link", "tags", "author")
# Page furniture trafilatura might keep on a page too short for its main-content heuristics.
HTML_FURNITURE = ["//nav", "//header", "//footer", "//aside"]
MAX_TITLE = 200
TIE_ENCODING = "cp1252"


class DocumentRejected(ReasonedError):
    """The object cannot become text; `reason` is a short machine-friendly word (undecodable, corrupt, ...)."""


@dataclass(frozen=True)
class ParsedDocument:
    title: str
    text: str
    file_type: str
    document_id: str = ""  # a post's id within its export; "" for a whole file
    published_at: int = 0  # seconds since the epoch; 0 when the document carries no date
    meta: dict[str, Any] = field(default_factory=dict)  # the encoding, front matter, a post's url and tags


# ---------------------------------------------------------------------------------------- decoding
def decode(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 (with or without BOM) at once, anything else as charset-normalizer detects it."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        binary = b"\0" in data
        raise DocumentRejected(
            "binary" if binary else "undecodable",
            "the bytes are not text" if binary else "no text encoding decodes these bytes",
        )
    # A short note fits several single-byte code pages equally well (crème reads as crčme in cp1250): a tie
    # goes to the commonest legacy encoding, Windows-1252.
    tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    if any(TIE_ENCODING in m.could_be_from_charset for m in tied):
        return data.decode(TIE_ENCODING), TIE_ENCODING
    return str(best), best.encoding


# ------------------------------------------------------------------------------------------- dates
def date_seconds(value: Any) -> int:
    """A date as people write it (ISO 8601, RFC 2822, epoch seconds or milliseconds) -> epoch seconds; 0
    when it is none of these (a post without a usable date is still ingested)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        return int(value / 1000 if value > 1e11 else value)
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            try:
                moment = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError):
                return 0
    else:
        return 0
    return max(0, unix_seconds(moment))


def _first(record: dict[str, Any], fields: tuple[str, ...]) -> Any:
    return next((record[f] for f in fields if record.get(f) not in (None, "")), None)


def _title_from_text(text: str, fallback: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:MAX_TITLE]
    return fallback


def _json_safe(value: Any) -> Any:
    """Front matter values as JSON (dates as ISO strings; anything else as text)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return str(value)


# ---------------------------------------------------------------------------------------- by type
def _plain(text: str, encoding: str, stem: str, kind: str) -> ParsedDocument:
    return ParsedDocument(_title_from_text(text, stem), text, kind, meta={"encoding": encoding})


def _markdown(text: str, encoding: str, stem: str) -> ParsedDocument:
    import frontmatter
    import yaml

    try:
        post = frontmatter.loads(text)
    except (yaml.YAMLError, ValueError):
        return _plain(text, encoding, stem, "md")  # a leading `---` that is not front matter: all of it is text
    front = {str(k): _json_safe(v) for k, v in post.metadata.items()}
    title = str(front.get("title") or _title_from_text(post.content, stem))[:MAX_TITLE]
    published = date_seconds(post.metadata.get("date"))
    return ParsedDocument(title, post.content, "md", published_at=published, meta={"encoding": encoding, **front})


def _html(text: str, encoding: str, stem: str) -> ParsedDocument:
    import trafilatura

    page = trafilatura.bare_extraction(
        text,
        with_metadata=True,
        include_comments=False,
        favor_recall=True,  # an author's own page: keep a short note whole rather than drop it
        prune_xpath=HTML_FURNITURE,
        # Only dates the page declares (meta tags, <time>): a year in the prose is not the publication date.
        date_extraction_params={"extensive_search": False, "original_date": True},
    )
    if page is None or not (page.text or "").strip():
        raise DocumentRejected("empty", "the page has no main content")
    meta = {"encoding": encoding, **({"url": page.url} if page.url else {})}
    title = (page.title or _title_from_text(page.text, stem))[:MAX_TITLE]
    return ParsedDocument(title, page.text, "html", published_at=date_seconds(page.date), meta=meta)


def _pdf(data: bytes, stem: str) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        text = "\n".join(page.extract_text() or "" for page in reader.pages)
        metadata = reader.metadata
        title = (metadata.title if metadata else None) or _title_from_text(text, stem)
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise DocumentRejected("corrupt", f"PDF cannot be read: {exc}") from exc
    try:
        published = date_seconds(metadata.creation_date) if metadata else 0
    except ValueError:  # a malformed creation date loses the date, not the document
        published = 0
    return ParsedDocument(title[:MAX_TITLE], text, "pdf", published_at=published)


def _post_id(record: dict[str, Any], body: str) -> str:
    """The export's own id for the post; without one, a hash of what identifies it (title and date, else its
    text): the same post always gets the same id."""
    own = _first(record, POST_ID_FIELDS)
    if isinstance(own, str | int) and not isinstance(own, bool):
        return str(own)[:128]
    title, date = _first(record, POST_TITLE_FIELDS), _first(record, DATE_FIELDS)
    basis = f"{title}\n{date}" if title and date else body
    return hashlib.sha1(basis.encode()).hexdigest()[:16]


def _posts(raw: str, encoding: str, kind: str) -> list[ParsedDocument]:
    """JSON: a post object or a list of posts; JSONL: one post per line. A post has a text field."""
    try:
        if kind == "jsonl":
            records = [json.loads(line) for line in raw.splitlines() if line.strip()]
        else:
            loaded = json.loads(raw)
            records = loaded if isinstance(loaded, list) else [loaded]
    except json.JSONDecodeError as exc:
        raise DocumentRejected("corrupt", f"invalid {kind.upper()} at line {exc.lineno}: {exc.msg}") from exc
    posts, seen = [], set()
    for record in records:
        body = _first(record, POST_TEXT_FIELDS) if isinstance(record, dict) else None
        if not isinstance(body, str) or not body.strip():
            continue
        post_id = _post_id(record, body)
        while post_id in seen:  # a repeated id within one export: each post still gets its own
            post_id += "~"
        seen.add(post_id)
        title = _first(record, POST_TITLE_FIELDS)
        title = str(title)[:MAX_TITLE] if title else _title_from_text(body, post_id)
        extra = {f: _json_safe(record[f]) for f in POST_META_FIELDS if record.get(f) not in (None, "")}
        published = date_seconds(_first(record, DATE_FIELDS))
        meta = {"encoding": encoding, **extra}
        posts.append(ParsedDocument(title, body, kind, document_id=post_id, published_at=published, meta=meta))
    if not posts:
        raise DocumentRejected("empty", f"no post has one of the fields {POST_TEXT_FIELDS}")
    return posts


def parse(key: str, data: bytes, allowed: list[str]) -> list[ParsedDocument]:
    """The documents in one object: one for a file, one per post for an export."""
    kind = file_type_of(key)
    stem = PurePosixPath(key).stem
    if kind is None or kind not in allowed:
        raise DocumentRejected("unsupported", f"file type of {PurePosixPath(key).name!r} is not in {allowed}")
    if not data.strip():
        raise DocumentRejected("empty", "the object has no content")
    if kind == "pdf":
        documents = [_pdf(data, stem)]
    else:
        text, encoding = decode(data)
        if kind == "txt":
            documents = [_plain(text, encoding, stem, kind)]
        elif kind == "md":
            documents = [_markdown(text, encoding, stem)]
        elif kind == "html":
            documents = [_html(text, encoding, stem)]
        else:
            documents = _posts(text, encoding, kind)
    if not any(d.text.strip() for d in documents):
        raise DocumentRejected("empty", "no text could be extracted")
    return [d for d in documents if d.text.strip()]

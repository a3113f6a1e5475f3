"""Parsing per file type, with a reason for everything that cannot become text: files as an author has
them (old encodings, saved web pages, exports of posts, notes with front matter)."""

import datetime as dt
import json
from pathlib import Path

import pytest

from llmtwin.workflows.ingest.clean import clean
from llmtwin.workflows.ingest.parse import DocumentRejected, date_seconds, parse

ALL = ["txt", "md", "html", "pdf", "json", "jsonl"]
CORPUS = Path(__file__).resolve().parents[2] / "examples/corpus"

SAVED_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>On Rivers | Mara Writes</title>
<meta property="article:published_time" content="2025-03-04T10:00:00Z">
<style>p { color: slategray }</style><script>var tracker = "pixel-42";</script></head>
<body>
<nav><a href="/">Home</a> | <a href="/essays">Essays</a> | <a href="/about">About</a></nav>
<div class="cookie-banner">We use cookies to improve your experience. <button>Accept all</button></div>
<article><h1>On Rivers</h1>
<p>Rivers remember every flood. I learned this walking the Severn after the winter of 2014, when the water
had left a line of silt on the church wall two metres above the path.</p>
<p>The old ferryman told me the river was never in a hurry; it was the town that kept forgetting.</p>
</article>
<aside><h3>Related posts</h3><ul><li>On Bridges</li><li>On Weirs</li></ul></aside>
<footer>Subscribe to the newsletter. &copy; 2024 Mara Writes</footer>
<script>document.write("late tracker")</script></body></html>"""

EXPORT = [
    {"id": 101, "title": "Winter swimming", "text": "Swam at the slipway. Nine degrees.", "date": "2026-01-12"},
    {"title": "The ferry", "body": "The winter ferry runs at eight and four.", "published_at": 1770076800},
    {"likes": 3},  # no text: not a post
    {"title": "Fog", "content": "The foghorn sounds like a cow.", "created_at": "Tue, 03 Mar 2026 08:00:00 +0000"},
]


def one(key: str, data: bytes):
    [document] = parse(key, data, ALL)
    return document


def test_every_demo_format_parses():
    for path in CORPUS.iterdir():
        documents = parse(path.name, path.read_bytes(), ALL)
        assert documents and all(d.text.strip() and d.title for d in documents), path.name


@pytest.mark.parametrize(
    ("text", "encoding", "expected"),
    [
        # cp1252: curly quotes, an em dash and the euro sign are not Latin-1; it must not be mistaken for it.
        ("“Café crème” — served at the harbour for €3, every morning since the war.", "cp1252", "cp1252"),
        # Latin-1 text is also valid cp1252 (its superset for printable characters): the same text.
        ("Crème brûlée and façades: an older note, saved in Latin-1 by an old editor.", "latin-1", "cp1252"),
        ("Tide tables: high water at 06:12 — low water at 12:30. Ōtsu, Zürich.", "utf-16", "utf_16"),
        ("Plain ASCII with a BOM-less UTF-8 café.", "utf-8", "utf-8"),
    ],
)
def test_text_in_the_encoding_it_was_saved_in(text, encoding, expected):
    document = one("note.txt", text.encode(encoding))  # utf-16: Python writes the BOM
    assert document.text == text
    assert document.meta["encoding"] == expected


def test_binary_is_rejected_with_its_reason():
    with pytest.raises(DocumentRejected) as info:
        parse("photo.txt", bytes(range(256)) * 8, ALL)
    assert info.value.reason in ("binary", "undecodable")


def test_a_saved_page_keeps_its_article_and_drops_the_furniture():
    document = one("rivers.html", SAVED_PAGE.encode())
    text = document.text
    assert "Rivers remember every flood" in text and "kept forgetting" in text
    for furniture in ("Home", "cookies", "Accept all", "Related posts", "newsletter", "2024", "tracker", "slategray"):
        assert furniture not in text, furniture
    assert document.title == "On Rivers" and text.count("On Rivers") <= 1  # the title is kept once
    assert document.published_at == date_seconds("2025-03-04")  # the page's date, to the day


def test_a_page_without_a_declared_date_is_not_dated_from_its_prose():
    undated = "\n".join(line for line in SAVED_PAGE.splitlines() if "published_time" not in line)
    document = one("rivers.html", undated.encode())
    assert document.published_at == 0  # "the winter of 2014" and "© 2024" are not publication dates


def test_front_matter_is_metadata_not_text():
    note = "---\ntitle: Gulls\ndate: 2025-06-01\ntags: [birds, harbour]\n---\n# Why I admire gulls\n\nThey never ask."
    document = one("gulls.md", note.encode())
    assert document.text.startswith("# Why I admire gulls") and "tags" not in document.text
    assert document.title == "Gulls" and document.meta["tags"] == ["birds", "harbour"]
    assert document.published_at == int(dt.datetime(2025, 6, 1, tzinfo=dt.UTC).timestamp())
    rule = one("rule.md", b"---\nnot: [front matter\n---\nA horizontal rule above, text below.")
    assert "horizontal rule" in rule.text  # a leading `---` that is not YAML loses nothing


def test_one_post_one_document_with_its_own_id_date_and_title():
    export = "\n".join(json.dumps(post) for post in EXPORT).encode()
    posts = parse("posts.jsonl", export, ALL)
    assert [p.title for p in posts] == ["Winter swimming", "The ferry", "Fog"]
    assert [p.text for p in posts] == [EXPORT[0]["text"], EXPORT[1]["body"], EXPORT[3]["content"]]
    assert posts[0].document_id == "101"
    assert [dt.datetime.fromtimestamp(p.published_at, dt.UTC).date().isoformat() for p in posts] == [
        "2026-01-12",
        "2026-02-03",
        "2026-03-03",
    ]
    again = parse("posts.jsonl", export, ALL)
    assert [p.document_id for p in again] == [p.document_id for p in posts]  # deterministic
    assert len({p.document_id for p in posts}) == 3
    # The same posts as a JSON list: the same documents.
    assert [p.document_id for p in parse("posts.json", json.dumps(EXPORT).encode(), ALL)] == [
        p.document_id for p in posts
    ]


def test_pdf_text():
    assert "forty-one" in one("walls.pdf", (CORPUS / "harbour-walls.pdf").read_bytes()).text


@pytest.mark.parametrize(
    ("key", "data", "reason"),
    [
        ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog", "corrupt"),
        ("empty.txt", b"   \n", "empty"),
        ("report.docx", b"PK\x03\x04", "unsupported"),
        ("bad.jsonl", b'{"text": "ok"}\n{not json', "corrupt"),
        ("noposts.json", b'{"likes": 3}', "empty"),
        ("menu.html", b"<html><body><nav>Home | About</nav><script>x()</script></body></html>", "empty"),
    ],
)
def test_rejections_carry_a_reason(key, data, reason):
    with pytest.raises(DocumentRejected) as info:
        parse(key, data, ALL)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-12", "2026-01-12T00:00:00+00:00"),
        ("2026-01-12T08:30:00+01:00", "2026-01-12T07:30:00+00:00"),
        ("Mon, 12 Jan 2026 08:30:00 GMT", "2026-01-12T08:30:00+00:00"),
        (1768206600, "2026-01-12T08:30:00+00:00"),
        (1768206600000, "2026-01-12T08:30:00+00:00"),  # milliseconds
        ("next Tuesday", None),
        (True, None),
    ],
)
def test_dates_as_people_write_them(value, expected):
    seconds = date_seconds(value)
    assert (dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat() if seconds else None) == expected


def test_clean_normalises_and_scrubs():
    text = (
        "Ｆｕｌｌ\u00a0width   text\n\n\n\nSubscribe to the newsletter\nMail me: mara@example.org or +44 20 7946 0958"
    )
    assert clean(text) == "Full width text\n\nMail me: mara@example.org or +44 20 7946 0958"
    assert clean(text, scrub_pii=True).endswith("Mail me: [email] or [phone]")

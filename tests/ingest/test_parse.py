"""Parsing per file type, with a reason for everything that cannot become text."""

from pathlib import Path

import pytest

from llmtwin.workflows.ingest.clean import clean
from llmtwin.workflows.ingest.parse import DocumentRejected, parse

ALL = ["txt", "md", "html", "pdf", "json", "jsonl"]
CORPUS = Path(__file__).resolve().parents[2] / "examples/corpus"


def test_every_demo_format_parses():
    for path in CORPUS.iterdir():
        doc = parse(path.name, path.read_bytes(), ALL)
        assert len(doc.text) > 100 and doc.title, path.name


def test_html_drops_scripts_navigation_and_keeps_the_article():
    doc = parse("tides.html", (CORPUS / "tides.html").read_bytes(), ALL)
    assert doc.title == "Reading the Tide Tables"
    assert "causeway" in doc.text and "tracking" not in doc.text and "Home | Essays" not in doc.text


def test_pdf_text_and_posts():
    assert "forty-one" in parse("walls.pdf", (CORPUS / "harbour-walls.pdf").read_bytes(), ALL).text
    posts = parse("p.jsonl", (CORPUS / "posts.jsonl").read_bytes(), ALL)
    assert "ferry" in posts.text and posts.title == "On winter swimming"


@pytest.mark.parametrize(
    ("key", "data", "reason"),
    [
        ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog", "corrupt"),
        ("empty.txt", b"   \n", "empty"),
        ("latin1.txt", "café crème".encode("latin-1"), "not-utf8"),
        ("report.docx", b"PK\x03\x04", "unsupported"),
        ("bad.jsonl", b'{"text": "ok"}\n{not json', "corrupt"),
        ("noposts.json", b'{"likes": 3}', "empty"),
    ],
)
def test_rejections_carry_a_reason(key, data, reason):
    with pytest.raises(DocumentRejected) as info:
        parse(key, data, ALL)
    assert info.value.reason == reason


def test_clean_normalises_and_scrubs():
    text = (
        "Ｆｕｌｌ\u00a0width   text\n\n\n\nSubscribe to the newsletter\nMail me: mara@example.org or +44 20 7946 0958"
    )
    assert clean(text) == "Full width text\n\nMail me: mara@example.org or +44 20 7946 0958"
    assert clean(text, scrub_pii=True).endswith("Mail me: [email] or [phone]")

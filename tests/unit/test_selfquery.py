"""Self-query: the date window and the sources a question names; query expansion's reading of the model's answer."""

import datetime as dt

import pytest

from llmtwin.frontdoor.expand import paraphrase_lines
from llmtwin.frontdoor.selfquery import NamedSources, date_window, named_sources

TODAY = dt.date(2026, 12, 2)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("question", "window"),
    [
        ("What did I write in February 2026?", (utc(2026, 2, 1), utc(2026, 3, 1))),
        ("What did I post during 2025 about bread?", (utc(2025, 1, 1), utc(2026, 1, 1))),
        ("Anything about the ferry since March 2026?", (utc(2026, 3, 1), None)),
        ("What came after 2025?", (utc(2026, 1, 1), None)),
        ("Notes before Sept 2026", (None, utc(2026, 9, 1))),
        ("Everything until March 2026", (None, utc(2026, 4, 1))),  # March included
        ("What did I write in December?", (utc(2026, 12, 1), utc(2027, 1, 1))),  # this month counts
        ("What did I write in May?", (utc(2026, 5, 1), utc(2026, 6, 1))),
        ("Since January 2026 and before June 2026", (utc(2026, 1, 1), utc(2026, 6, 1))),
    ],
)
def test_the_window_a_question_names(question, window):
    assert date_window(question, TODAY) == window


@pytest.mark.parametrize("question", ["Why do you like gulls?", "Who may come in?", "In the fog, what sounds?"])
def test_no_date_no_window(question):
    assert date_window(question, TODAY) is None


@pytest.mark.parametrize(
    ("question", "named"),
    [
        ("What did I say about tides in garden.md?", NamedSources(files=("garden.md",))),
        ("In notes/2025/fog.markdown, what sound?", NamedSources(files=("notes/2025/fog.markdown",))),
        ('What does "Notes on Fog" say about horns?', NamedSources(titles=("Notes on Fog",))),
        ("What does \u201cThe Ferry\u201d say?", NamedSources(titles=("The Ferry",))),
        ('Compare "fog.md" and ferry.txt', NamedSources(files=("ferry.txt", "fog.md"))),
        ("What's the ferry's schedule? It's late.", None),  # apostrophes are not quotes
        ("What is version 2.5 of the plan, e.g. the next step?", None),  # dots that are not file names
        ("Is node.js in report.pdfx?", None),  # not an extension the parser reads
    ],
)
def test_the_sources_a_question_names(question, named):
    found = named_sources(question)
    if named and found:
        assert sorted(found.files) == sorted(named.files) and found.titles == named.titles
    else:
        assert found == named


def test_paraphrases_are_read_from_the_models_lines():
    answer = '1. When is the ferry leaving?\n- "What time does the boat depart?"\n\nWhen does the ferry leave?\n2) ok\n'
    question = "When does the ferry leave?"
    assert paraphrase_lines(answer, question, 4) == ["When is the ferry leaving?", "What time does the boat depart?"]
    assert paraphrase_lines(answer, question, 1) == ["When is the ferry leaving?"]

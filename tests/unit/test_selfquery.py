"""Self-query: the date window a question names."""

import datetime as dt

import pytest

from llmtwin.frontdoor.selfquery import date_window

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

"""Self-query: the filters a question names itself. A date window ("what did I write in February 2026?",
"since 2025", "until March 2026") filters on the documents' dates; a source ("in garden.md", a quoted
title: 'in "Notes on fog"') on the file names and titles.

Rule-based (month names and years in English, file names with a text extension, double-quoted titles):
the twin's own model is small, and a filter it invented would hide the right passages. Off by default
(`spec.serving.gateway.selfQuery`), because a year in a question is as often its topic ("what was built in
1842?") as the time of writing.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from llmtwin.api.v1alpha1 import FILE_SUFFIXES

MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
_WHEN = re.compile(
    rf"\b(?P<word>in|during|since|after|before|until)\s+(?:(?P<month>{_MONTH})\.?\s*)?(?P<year>(?:19|20)\d\d)?\b",
    re.IGNORECASE,
)

Window = tuple[dt.datetime | None, dt.datetime | None]  # [since, until)


def _start(year: int, month: int = 1) -> dt.datetime:
    return dt.datetime(year, month, 1, tzinfo=dt.UTC)


def _after(year: int, month: int | None) -> dt.datetime:
    """The start of the period after this month (or year)."""
    if month is None:
        return _start(year + 1)
    return _start(year + 1) if month == 12 else _start(year, month + 1)


def date_window(question: str, today: dt.date) -> Window | None:
    """The [since, until) window the question names, or None. A month without a year is its latest
    occurrence up to today."""
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    for match in _WHEN.finditer(question):
        word, month_name, year_text = match["word"].lower(), match["month"], match["year"]
        if not month_name and not year_text:
            continue
        month = MONTHS[month_name.lower()] if month_name else None
        year = int(year_text) if year_text else (today.year if month and month <= today.month else today.year - 1)
        first = _start(year, month or 1)
        if word in ("in", "during"):
            since, until = first, _after(year, month)
        elif word in ("since", "after"):
            since = first if word == "since" else _after(year, month)
        else:
            until = first if word == "before" else _after(year, month)  # "until March": March included
    return (since, until) if since or until else None


# A file name with an extension the parser reads ("garden.md", "notes/garden.md").
_SUFFIXES = "|".join(sorted((s.lstrip(".") for s in FILE_SUFFIXES), key=len, reverse=True))
_FILE = re.compile(rf"(?<![\w./-])(?P<name>\w[\w./-]*\.(?:{_SUFFIXES}))\b", re.IGNORECASE)
# A title in straight or curly double quotes; single quotes are apostrophes as often.
_QUOTED = re.compile(r"[\"\u201c](?P<title>[^\"\u201c\u201d]{2,200})[\"\u201d]")


@dataclass(frozen=True)
class NamedSources:
    """The files and titles a question names; a chunk matches if it comes from any of them."""

    files: tuple[str, ...] = ()
    titles: tuple[str, ...] = ()


def named_sources(question: str) -> NamedSources | None:
    files = tuple(dict.fromkeys(m["name"] for m in _FILE.finditer(question)))
    titles = tuple(dict.fromkeys(m["title"].strip() for m in _QUOTED.finditer(question)))
    titles = tuple(t for t in titles if t and t not in files)
    return NamedSources(files, titles) if files or titles else None

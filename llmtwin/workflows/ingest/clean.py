"""Normalise extracted text: unicode, whitespace, boilerplate lines, optional PII masking."""

from __future__ import annotations

import re
import unicodedata

BOILERPLATE = re.compile(
    r"^\s*(subscribe( to .*)?|share this( post)?|all rights reserved.*|©.*|copyright .*|"
    r"click here.*|read more|follow me on .*|sign up for .*newsletter.*|cookie.*policy.*)\s*$",
    re.IGNORECASE,
)
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
PHONE = re.compile(r"(?<!\w)\+?\d[\d\s().-]{7,}\d(?!\w)")


def clean(text: str, scrub_pii: bool = False) -> str:
    text = unicodedata.normalize("NFKC", text).replace("\u00ad", "")
    lines = []
    for line in text.splitlines():
        line = re.sub(r"[ \t\u00a0]+", " ", line).strip()
        if BOILERPLATE.match(line):
            continue
        lines.append(line)
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if scrub_pii:
        text = PHONE.sub("[phone]", EMAIL.sub("[email]", text))
    return text

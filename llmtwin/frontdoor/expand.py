"""Query expansion: the twin's model server rewrites a question a few ways before retrieval, so passages
that say the same thing in other words are found too (`spec.serving.gateway.queryExpansion`).

One chat request per question, greedy (no temperature: TGI refuses 0), so a question always expands the
same way; a model server that fails or answers nothing costs the expansion, never the answer.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from prometheus_client import Counter

log = logging.getLogger(__name__)

EXPANSION_FAILURES = Counter(
    "llmtwin_query_expansion_failures_total", "Questions searched without paraphrases: the model server failed"
)
INSTRUCTION = (
    "Rewrite the user's question {count} different ways, using other words with the same meaning. "
    "Write one rewritten question per line and nothing else."
)
_LIST_MARK = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|\w[.)])\s*")


def paraphrase_lines(text: str, question: str, count: int) -> list[str]:
    """The model's answer as distinct paraphrases: list marks and quotes stripped, the question itself and
    repeats dropped, at most `count`."""
    seen = {question.strip().lower()}
    found = []
    for line in text.splitlines():
        line = _LIST_MARK.sub("", line).strip().strip("\"'").strip()
        if len(line) > 3 and line.lower() not in seen:
            seen.add(line.lower())
            found.append(line)
    return found[:count]


class QueryExpander:
    """`count` paraphrases of a question from a model server's chat route (TGI, vLLM, `llmtwin serve`)."""

    def __init__(self, client: Any, count: int, max_tokens_each: int = 32):
        self.client = client
        self.count = count
        self.max_tokens = max_tokens_each * count

    def __call__(self, question: str, model: str) -> list[str]:
        """`model`: the served name to ask (the production adapter, else the base model)."""
        messages = [
            {"role": "system", "content": INSTRUCTION.format(count=self.count)},
            {"role": "user", "content": question},
        ]
        try:
            output = self.client.chat_completion(messages, model=model, max_tokens=self.max_tokens)
        except Exception as exc:  # the question is still answered, from its own words
            EXPANSION_FAILURES.inc()
            log.warning("query expansion failed, searching the question alone: %s", exc)
            return []
        return paraphrase_lines(output.choices[0].message.content or "", question, self.count)

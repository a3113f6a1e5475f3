"""One error base for everything that fails for a reason a user or an operator can act on.

`reason` is a short machine-friendly word (a condition reason, a DLQ header, an outcome label);
`detail` is the sentence for a human. Subclasses fix the vocabulary of their own reasons.
"""

from __future__ import annotations


class ReasonedError(Exception):
    """An error that carries the reason it happened and a human-readable detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SpecError(ReasonedError):
    """A setting in the LLMTwin resource that cannot work; `field` is its path (`spec.training.lora.r`)."""

    def __init__(self, field: str, problem: str):
        super().__init__("SpecInvalid", f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def __str__(self) -> str:
        return self.detail

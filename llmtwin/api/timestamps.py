"""The one clock format of the API: RFC 3339 UTC with second precision, as Kubernetes writes it."""

from __future__ import annotations

import datetime as dt


def now() -> str:
    """The current time as `2026-12-01T05:26:34Z` (conditions, lastIngestion, lastTraining)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def unix_seconds(moment: dt.datetime | None) -> int:
    """Whole seconds since the epoch; a naive datetime counts as UTC, None as 0 (no date)."""
    if moment is None:
        return 0
    return int((moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp())


def epoch_seconds(stamp: str) -> float:
    """Seconds since the epoch of a timestamp in this format (or any ISO 8601 one)."""
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()

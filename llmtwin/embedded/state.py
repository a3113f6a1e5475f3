"""Which `llmtwin up` serves a data directory: its pid and port in `<data-dir>/state.json`.

Milvus Lite allows one process per data file, so `ask` and `train` talk to a running `up` (or
refuse to open the same collection) instead of opening it a second time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from llmtwin.api.v1alpha1 import LLMTwin

STATE_FILE = "state.json"


def default_data_dir(twin: LLMTwin) -> Path:
    return Path(".llmtwin") / twin.name


def write_state(data_dir: Path, port: int) -> None:
    (Path(data_dir) / STATE_FILE).write_text(json.dumps({"pid": os.getpid(), "port": port}))


def clear_state(data_dir: Path) -> None:
    (Path(data_dir) / STATE_FILE).unlink(missing_ok=True)


def running_server(data_dir: Path) -> int | None:
    """The port of a live `llmtwin up` for this data dir, None when none runs."""
    state_file = Path(data_dir) / STATE_FILE
    if not state_file.exists():
        return None
    state = json.loads(state_file.read_text())
    try:
        os.kill(state["pid"], 0)
    except (ProcessLookupError, PermissionError):
        return None
    return int(state["port"])

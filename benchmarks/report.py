"""The table every benchmark prints: metric | value | note."""

from __future__ import annotations

import os


def print_table(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(name) for name, _, _ in rows)
    value_width = max(10, *(len(value) for _, value, _ in rows))
    print(f"\n{'metric'.ljust(width)} | {'value'.ljust(value_width)} | note")
    print(f"{'-' * width}-|-{'-' * value_width}-|-----")
    for name, value, note in rows:
        print(f"{name.ljust(width)} | {value.ljust(value_width)} | {note}")
    print(f"\nmachine: {os.cpu_count()} cores")

"""Tokenized examples packed into rows: no compute spent on padding, no attention across examples.

Examples are placed into rows by best-fit decreasing. A row holds as many tokens as the longest
example (at most `maxSeqLength`): short examples share a row, and no row is wider than needed,
because attention over a wider row costs more per token (the block-diagonal mask below hides the
other examples, it does not skip computing them). Rows of similar width are batched together,
and the batches (not the rows) are shuffled per epoch, so a batch pads almost nothing.

Each example keeps its own position ids (0, 1, 2, ... restarting at every example); with no
attention mask, transformers reads those restarts as sequence boundaries and builds a
block-diagonal causal mask, so an example never attends to its row neighbours. Only the author's
response is learned: prompt tokens, the first token of every example and padding carry the ignore
label.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

IGNORE = -100  # the label transformers' loss skips


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


def tokenize(records: list[dict[str, Any]], tokenizer: Any, max_tokens: int) -> list[Example]:
    """Prompt + completion token ids, cut to max_tokens; examples with no response token left are dropped."""
    prompts = tokenizer([r["prompt"] for r in records], add_special_tokens=False)["input_ids"]
    completions = tokenizer([r["completion"] for r in records], add_special_tokens=False)["input_ids"]
    examples = []
    for prompt, completion in zip(prompts, completions, strict=True):
        ids = (prompt + completion)[:max_tokens]
        labels = ([IGNORE] * len(prompt) + completion)[:max_tokens]
        if any(label != IGNORE for label in labels[1:]):
            examples.append(Example(ids, labels))
    return examples


def pack(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing: indices grouped into rows whose lengths sum to at most `capacity`."""
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (free tokens, row index), sorted
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        slot = bisect.bisect_left(free, (lengths[i], -1))
        if slot == len(free):
            rows.append([i])
            bisect.insort(free, (capacity - lengths[i], len(rows) - 1))
            continue
        space, row = free.pop(slot)
        rows[row].append(i)
        bisect.insort(free, (space - lengths[i], row))
    return rows


def collate(rows: list[list[Example]], pad_id: int) -> dict[str, torch.Tensor]:
    """A batch of packed rows, right-padded to the longest row (the padding is its own ignored segment)."""
    width = max(sum(len(e) for e in row) for row in rows)
    input_ids, labels, positions = [], [], []
    for row in rows:
        ids: list[int] = []
        row_labels: list[int] = []
        row_positions: list[int] = []
        for example in row:
            ids += example.input_ids
            # Never learn to predict an example's first token from the previous example's end.
            row_labels += [IGNORE, *example.labels[1:]]
            row_positions += range(len(example))
        pad = width - len(ids)
        input_ids.append(ids + [pad_id] * pad)
        labels.append(row_labels + [IGNORE] * pad)
        positions.append(row_positions + list(range(pad)))
    return {
        "input_ids": torch.tensor(input_ids),
        "labels": torch.tensor(labels),
        "position_ids": torch.tensor(positions),
    }


def learned_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Tokens the loss counts (the model predicts labels[1:] from input_ids[:-1])."""
    return int((batch["labels"][:, 1:] != IGNORE).sum())


class PackedBatches:
    """Micro-batch number → the same batch on every run: batch order shuffled per epoch with seed + epoch."""

    def __init__(self, examples: list[Example], max_tokens: int, batch_size: int, seed: int, pad_id: int):
        capacity = min(max_tokens, max((len(e) for e in examples), default=max_tokens))
        rows = [[examples[i] for i in row] for row in pack([len(e) for e in examples], capacity)]
        rows.sort(key=lambda row: -sum(len(e) for e in row))  # neighbours have similar widths
        self.batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
        self.seed = seed
        self.pad_id = pad_id
        self.per_epoch = len(self.batches)
        self._order: tuple[int, list[int]] | None = None

    def _epoch_order(self, epoch: int) -> list[int]:
        if self._order is None or self._order[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            self._order = (epoch, torch.randperm(len(self.batches), generator=generator).tolist())
        return self._order[1]

    def batch(self, number: int) -> tuple[dict[str, torch.Tensor], int]:
        """(tensors, example tokens) of micro-batch `number`."""
        epoch, position = divmod(number, self.per_epoch)
        rows = self.batches[self._epoch_order(epoch)[position]]
        return collate(rows, self.pad_id), sum(len(e) for row in rows for e in row)

    def padding_ratio(self) -> float:
        """Share of the batches' token slots that are padding."""
        used = slots = 0
        for rows in self.batches:
            widths = [sum(len(e) for e in row) for row in rows]
            used += sum(widths)
            slots += max(widths) * len(widths)
        return 1 - used / slots if slots else 0.0

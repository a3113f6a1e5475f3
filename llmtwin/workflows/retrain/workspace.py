"""Where the retrain steps leave their files in the workflow's shared workspace volume.

Each step reads what the previous one wrote: dataset → train → evaluate → register. A rerun of a
step in the same workspace (an Argo retry, `llmtwin train --event-id` again) finds its own earlier
output there, which is how training resumes from its last checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RetrainWorkspace:
    root: Path

    @property
    def dataset_dir(self) -> Path:
        return self.root / "dataset"

    @property
    def train_file(self) -> Path:
        return self.dataset_dir / "train.jsonl"

    @property
    def eval_file(self) -> Path:
        return self.dataset_dir / "eval.jsonl"

    @property
    def manifest(self) -> Path:
        return self.dataset_dir / "manifest.json"

    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    @property
    def adapter_dir(self) -> Path:
        return self.train_dir / "adapter"

    @property
    def checkpoints_dir(self) -> Path:
        return self.train_dir / "checkpoints"

    @property
    def loss_json(self) -> Path:
        return self.train_dir / "loss.json"

    @property
    def loss_png(self) -> Path:
        return self.train_dir / "loss.png"

    @property
    def train_summary(self) -> Path:
        return self.train_dir / "summary.json"

    @property
    def evaluate_dir(self) -> Path:
        return self.root / "evaluate"

    @property
    def report(self) -> Path:
        return self.evaluate_dir / "report.json"

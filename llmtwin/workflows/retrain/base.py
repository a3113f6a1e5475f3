"""The checks a retrain runs before any work: a setting the base model cannot honour (a LoRA target
module it lacks, a sequence longer than its context) fails here, naming the field."""

from __future__ import annotations

from typing import Any

from llmtwin.api.errors import SpecError
from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.api.validation import training_problems
from llmtwin.models.load import load_config, model_facts
from llmtwin.models.resolve import ResolvedModel


def check_training_config(twin: LLMTwin, model: ResolvedModel) -> Any:
    """Everything about the spec that can be checked without training; returns the model config."""
    config = load_config(model)
    problems = training_problems(twin, model_facts(config))
    if problems:
        raise SpecError(problems[0].field, problems[0].message)
    return config

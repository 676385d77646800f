"""What one analysis found: the row a version of call_analyses holds (kept apart from the models
that make it, so the consumer and the API read and write it without loading them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class AnalysisResult:
    method: Literal["llm", "local"]
    model: str
    summary: str
    success: bool | None
    success_reason: str
    sentiment: str
    sentiment_score: float
    extracted: dict[str, Any] = field(default_factory=dict)
    extraction_valid: bool | None = None  # None: the agent declares no extraction schema
    extraction_errors: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)

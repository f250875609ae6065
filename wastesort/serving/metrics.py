"""What the service sees, for Prometheus at BentoML's `/metrics`, beside BentoML's own request
metrics: answers per label and stream, uncertain answers, the confidence, rejected uploads,
captures and their misses, and the served model version.

The metrics are made in the service worker (``ServiceMetrics.create``), after BentoML has set
``PROMETHEUS_MULTIPROC_DIR``: prometheus_client imported earlier would count in a single
process and `/metrics` would never show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PREFIX = "wastesort"
CONFIDENCE_BUCKETS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


@dataclass
class ServiceMetrics:
    answers: Any
    uncertain: Any
    confidence: Any
    rejected: Any
    captured: Any
    capture_missed: Any
    model: Any
    version: str

    @classmethod
    def create(cls, model: dict[str, str]) -> ServiceMetrics:
        import prometheus_client as p

        version = str(model["version"])
        made = cls(
            answers=p.Counter(
                f"{PREFIX}_answers",
                "Answers given, by label and recycling stream",
                ["label", "stream", "model_version"],
            ),
            uncertain=p.Counter(
                f"{PREFIX}_uncertain",
                "Answers under serve.min_confidence (sent to the uncertain stream)",
                ["model_version"],
            ),
            confidence=p.Histogram(
                f"{PREFIX}_confidence",
                "Confidence of the top label",
                ["model_version"],
                buckets=CONFIDENCE_BUCKETS,
            ),
            rejected=p.Counter(
                f"{PREFIX}_rejected_uploads", "Uploads answered with a 4xx, by reason", ["reason"]
            ),
            captured=p.Counter(
                f"{PREFIX}_captured", "Uploads kept for review (serve.capture)", ["kind"]
            ),
            capture_missed=p.Counter(
                f"{PREFIX}_capture_missed",
                "Uploads serve.capture wanted but could not keep, by reason",
                ["reason"],
            ),
            model=p.Gauge(
                f"{PREFIX}_model_info",
                "The served model: 1 for the version answering",
                ["name", "version", "alias", "format"],
                multiprocess_mode="max",
            ),
            version=version,
        )
        made.model.labels(model["name"], version, model["alias"], model["format"]).set(1)
        return made

    def answered(self, answer: dict[str, Any]) -> None:
        self.answers.labels(answer["label"], answer["stream"], self.version).inc()
        self.confidence.labels(self.version).observe(answer["confidence"])
        if answer["uncertain"]:
            self.uncertain.labels(self.version).inc()

    def reject(self, reason: str) -> None:
        self.rejected.labels(reason).inc()

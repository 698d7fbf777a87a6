"""Prometheus metrics of one app instance (own registry, so tests and reloads never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServiceMetrics:
    """Requests and latency by route and status, 429s by kind, decisions by outcome, scores, model
    version."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "coopscore_requests_total",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "coopscore_request_seconds",
            "HTTP request latency by route template",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.decisions = Counter(
            "coopscore_decisions_total", "Decisions by outcome", ["decision"], registry=self.registry
        )
        self.scores = Histogram(
            "coopscore_score",
            "Distribution of issued scores",
            buckets=tuple(range(450, 751, 25)),
            registry=self.registry,
        )
        self.model_info = Gauge(
            "coopscore_model_info",
            "The model in service (value 1)",
            ["name", "version"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "coopscore_rate_limited_total",
            "Requests refused with 429: kind=key (an API key over its rate), "
            "kind=auth_failure (a client address over its failed-authentication budget)",
            ["kind"],
            registry=self.registry,
        )
        for kind in ("key", "auth_failure"):  # both series exist from the start, at 0
            self.rate_limited.labels(kind=kind)
        self.feature_psi = Gauge(
            "coopscore_feature_psi", "Latest drift PSI per feature", ["feature"], registry=self.registry
        )

    def set_model(self, name: str, version: str) -> None:
        """Point the model-info gauge at the model now serving."""
        self.model_info.clear()
        self.model_info.labels(name=name, version=version).set(1)

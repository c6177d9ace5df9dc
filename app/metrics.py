"""Prometheus metrics: the only module that knows Prometheus.

Results drive every target metric through one function (`observe`), so a new kind needs nothing here.
A target keeps its last known values until it is checked again, as Prometheus expects of a gauge.
Labels hold target names and kinds only; results are redacted before they get here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app import __version__
from app.checks import facts as fact_names
from app.checks.base import Scalar, Status
from app.results import Result, Run, Verdict

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self, running: Callable[[], bool], configured: int, config_valid: bool) -> None:
        # one registry per app, so two apps in one process (tests) never share or clash
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        Gauge("testpod_build_info", "Version of the test pod.", ["version"], registry=self.registry).labels(
            version=__version__
        ).set(1)
        Gauge("testpod_targets_configured", "Targets in the targets file.", registry=self.registry).set(configured)
        Gauge("testpod_config_valid", "1 if the targets file loaded and validated.", registry=self.registry).set(
            int(config_valid)
        )
        self.runs = Counter("testpod_runs", "Finished runs by verdict.", ["verdict"], registry=self.registry)
        self.run_duration = Histogram(
            "testpod_run_duration_seconds",
            "Wall time of finished runs.",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
            registry=self.registry,
        )
        self.ready = Gauge("testpod_ready", "1 if the last run's verdict was ready.", registry=self.registry)
        self.latest: dict[str, Result] = {}
        self.observed = 0  # runs recorded so far: a rendering of the metrics is current while this stays the same
        self.registry.register(_TargetCollector(self.latest, running))

    def observe(self, run: Run) -> None:
        """Record a finished run and every result in it."""
        self.observed += 1
        verdict = run.verdict or Verdict.NOT_READY
        self.runs.labels(verdict=verdict.value).inc()
        self.run_duration.observe((run.duration_ms or 0) / 1000)
        self.ready.set(int(verdict == Verdict.READY))
        for result in run.results:
            self.latest[result.name] = result

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _TargetCollector(Collector):
    """Per-target families, built from the latest results at scrape time."""

    def __init__(self, latest: dict[str, Result], running: Callable[[], bool]) -> None:
        self.latest = latest
        self.running = running

    def collect(self) -> Iterator[Metric]:
        labels = ["target", "kind"]
        status = GaugeMetricFamily(
            "testpod_target_status", "1 for the target's last status, 0 for the others.", labels=[*labels, "status"]
        )
        duration = GaugeMetricFamily("testpod_target_duration_seconds", "Duration of the last check.", labels=labels)
        required = GaugeMetricFamily("testpod_target_required", "1 if the target blocks readiness.", labels=labels)
        checked = GaugeMetricFamily(
            "testpod_target_last_checked_timestamp_seconds", "When the last check started.", labels=labels
        )
        expiry = GaugeMetricFamily(
            "testpod_tls_days_to_expiry", "Days until the target's certificate expires.", labels=labels
        )
        now = datetime.now(UTC)
        for result in list(self.latest.values()):
            names = [result.name, result.kind]
            for each in Status:
                status.add_metric([*names, each.value], float(result.status == each))
            duration.add_metric(names, result.duration_ms / 1000)
            required.add_metric(names, float(result.required))
            checked.add_metric(names, result.started_at.timestamp())
            days = _days_to_expiry(result.facts, now)
            if days is not None:
                expiry.add_metric(names, days)
        yield from (status, duration, required, checked, expiry)
        yield GaugeMetricFamily("testpod_run_in_progress", "1 while a run is in flight.", value=float(self.running()))


def _days_to_expiry(facts: dict[str, Scalar], now: datetime) -> float | None:
    # the expiry instant, exported for any kind that reports it, else the days left from a kind that only knows those
    not_after = facts.get(fact_names.NOT_AFTER)
    if isinstance(not_after, str):
        try:
            moment = datetime.fromisoformat(not_after)
        except ValueError:
            return None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return round((moment - now).total_seconds() / 86400, 3)
    days = facts.get(fact_names.DAYS_TO_EXPIRY)
    if isinstance(days, int | float) and not isinstance(days, bool):
        return float(days)
    return None

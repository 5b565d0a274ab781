"""The router's Prometheus metrics, in a registry of its own (one per app, so tests are isolated).

Labels stay bounded: `model` is a model the fleet knows (else "unknown"), `target` a route target
(`pool:<name>`, `upstream:<host>`, `model:<id>`, or "none"), `worker` a worker id present in the
snapshot (series of departed workers are removed), `status` an HTTP status code.

    flotilla_router_requests_total{model,target,status}       requests answered
    flotilla_router_request_duration_seconds{model,target}    arrival to last byte
    flotilla_router_ttft_seconds{model,target}                arrival to first streamed byte
    flotilla_router_overhead_seconds                          time in the router itself
    flotilla_router_inflight{worker}                          this replica's requests in flight
    flotilla_router_outstanding{worker}                       in flight across all replicas
    flotilla_router_retries_total{reason}                     attempts after the first
    flotilla_router_failovers_total{target}                   served by a later route target
    flotilla_router_stream_errors_total{reason}               streams ended with an error event
    flotilla_router_stream_resumes_total{outcome}             resumed, attempt_failed, finished
    flotilla_router_stream_resume_refusals_total{reason}      broken streams not resumed, by reason
    flotilla_router_stream_resume_gap_seconds                 last chunk of the dead worker to the
                                                              first of its replacement
    flotilla_router_cache_requests_total{model,result}        hit, miss, bypass, error
    flotilla_router_cache_evictions_total{model}              entries evicted past max_entries
    flotilla_router_complexity_choices_total{model,choice}    auto routes: small or large
    flotilla_router_complexity_score{model}                   auto routes: the scores (histogram)
    flotilla_router_client_disconnects_total                  clients gone before the end
    flotilla_router_circuit_state{worker}                     0 healthy, 1 degraded, 2 open
    flotilla_router_circuit_transitions_total{state}          transitions into a state
    flotilla_router_worker_success_rate{worker}               recent share of good attempts
    flotilla_router_cold_requests_total{pool}                 requests that found a pool cold
    flotilla_router_rate_limited_total{limit}                 429s by limit (requests, tokens)
    flotilla_router_tokens_total{model,kind}                  prompt / completion / estimated
    flotilla_router_store_up                                  1 if the last store read worked
    flotilla_router_snapshot_age_seconds                      age of the fleet snapshot in use
    flotilla_router_store_errors_total{operation}             failed store calls by operation
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from router.breaker import STATES

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0, 300.0)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0)
_GAP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0, 60.0)
_SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_STATE_VALUE = {state: float(i) for i, state in enumerate(STATES)}


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("flotilla_router_requests_total", "Requests answered",
                                ("model", "target", "status"), registry=r)
        self.duration = Histogram("flotilla_router_request_duration_seconds",
                                  "Arrival to last byte", ("model", "target"),
                                  buckets=_LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("flotilla_router_ttft_seconds",
                              "Arrival to first streamed byte", ("model", "target"),
                              buckets=_LATENCY_BUCKETS, registry=r)
        self.overhead = Histogram("flotilla_router_overhead_seconds",
                                  "Time spent in the router itself (excluding upstream waits)",
                                  buckets=_OVERHEAD_BUCKETS, registry=r)
        self.inflight = Gauge("flotilla_router_inflight", "This replica's requests in flight",
                              ("worker",), registry=r)
        self.outstanding = Gauge("flotilla_router_outstanding",
                                 "Requests in flight across all router replicas", ("worker",),
                                 registry=r)
        self.retries = Counter("flotilla_router_retries_total", "Attempts after the first",
                               ("reason",), registry=r)
        self.failovers = Counter("flotilla_router_failovers_total",
                                 "Requests served by a later target of their route",
                                 ("target",), registry=r)
        self.stream_errors = Counter("flotilla_router_stream_errors_total",
                                     "Streams that ended with an error event", ("reason",),
                                     registry=r)
        self.resumes = Counter("flotilla_router_stream_resumes_total",
                               "Continuations of broken streams on another worker", ("outcome",),
                               registry=r)
        self.resume_refusals = Counter("flotilla_router_stream_resume_refusals_total",
                                       "Broken streams that were not resumed, by reason",
                                       ("reason",), registry=r)
        self.resume_gap = Histogram("flotilla_router_stream_resume_gap_seconds",
                                    "Last chunk from the dead worker to the first from its "
                                    "replacement", buckets=_GAP_BUCKETS, registry=r)
        self.cache_requests = Counter("flotilla_router_cache_requests_total",
                                      "Requests to routes with a response cache, by result",
                                      ("model", "result"), registry=r)
        self.cache_evictions = Counter("flotilla_router_cache_evictions_total",
                                       "Cache entries evicted past a route's max_entries",
                                       ("model",), registry=r)
        self.complexity_choices = Counter("flotilla_router_complexity_choices_total",
                                          "Requests of auto routes by the side chosen",
                                          ("model", "choice"), registry=r)
        self.complexity_score = Histogram("flotilla_router_complexity_score",
                                          "Complexity scores of requests of auto routes",
                                          ("model",), buckets=_SCORE_BUCKETS, registry=r)
        self.disconnects = Counter("flotilla_router_client_disconnects_total",
                                   "Clients that left before their response ended", registry=r)
        self.circuit_state = Gauge("flotilla_router_circuit_state",
                                   "Circuit state: 0 healthy, 1 degraded, 2 open", ("worker",),
                                   registry=r)
        self.circuit_transitions = Counter("flotilla_router_circuit_transitions_total",
                                           "Circuit transitions into a state", ("state",),
                                           registry=r)
        self.success_rate = Gauge("flotilla_router_worker_success_rate",
                                  "Recent share of successful attempts", ("worker",), registry=r)
        self.cold_requests = Counter("flotilla_router_cold_requests_total",
                                     "Requests that found a pool with no ready worker", ("pool",),
                                     registry=r)
        self.rate_limited = Counter("flotilla_router_rate_limited_total",
                                    "Requests refused by a key's limits", ("limit",), registry=r)
        self.tokens = Counter("flotilla_router_tokens_total", "Tokens served",
                              ("model", "kind"), registry=r)
        self.store_up = Gauge("flotilla_router_store_up",
                              "1 if the last fleet store read succeeded", registry=r)
        self.snapshot_age = Gauge("flotilla_router_snapshot_age_seconds",
                                  "Age of the fleet snapshot in use", registry=r)
        self.store_errors = Counter("flotilla_router_store_errors_total",
                                    "Failed fleet store calls", ("operation",), registry=r)
        for state in STATES:
            self.circuit_transitions.labels(state)
        for limit in ("requests", "tokens"):
            self.rate_limited.labels(limit)
        # Children cached by label values: `labels()` costs a lock and a tuple per call.
        self._request_children: dict[tuple[str, str, int], tuple[object, object]] = {}
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._workers: set[str] = set()

    def observe_request(self, model: str, target: str, status: int, duration_s: float) -> None:
        children = self._request_children.get((model, target, status))
        if children is None:
            if len(self._request_children) > 10_000:
                self._request_children.clear()
            children = self._request_children[(model, target, status)] = (
                self.requests.labels(model, target, str(status)),
                self.duration.labels(model, target))
        counter, histogram = children
        counter.inc()  # type: ignore[attr-defined]
        histogram.observe(duration_s)  # type: ignore[attr-defined]

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            if len(self._children) > 10_000:
                self._children.clear()
            child = self._children[key] = metric.labels(*labels)
        return child

    def count_tokens(self, model: str, prompt: int, completion: int, estimated: bool) -> None:
        if estimated:
            self._child(self.tokens, model, "estimated").inc(prompt + completion)
        else:
            self._child(self.tokens, model, "prompt").inc(prompt)
            self._child(self.tokens, model, "completion").inc(completion)

    def observe_complexity(self, model: str, choice: str, score: float) -> None:
        self._child(self.complexity_choices, model, choice).inc()
        self._child(self.complexity_score, model).observe(score)

    def cache_result(self, model: str, result: str) -> None:
        self._child(self.cache_requests, model, result).inc()

    def observe_ttft(self, model: str, target: str, seconds: float) -> None:
        self._child(self.ttft, model, target).observe(seconds)

    def on_transition(self, worker: str, old: str, new: str) -> None:
        self.circuit_transitions.labels(new).inc()
        self.circuit_state.labels(worker).set(_STATE_VALUE[new])

    def bind_gauges(self, *, store_up: Callable[[], float],
                    snapshot_age: Callable[[], float]) -> None:
        self.store_up.set_function(store_up)
        self.snapshot_age.set_function(snapshot_age)

    def update_workers(self, workers: set[str], local: dict[str, int],
                       outstanding: dict[str, int], circuits: dict[str, str],
                       success: dict[str, float]) -> None:
        """Refresh per-worker gauges (report period), removing series of departed workers."""
        for gone in self._workers - workers:
            for gauge in (self.inflight, self.outstanding, self.circuit_state, self.success_rate):
                try:
                    gauge.remove(gone)
                except KeyError:
                    pass
        self._workers = set(workers)
        for worker in workers:
            self.inflight.labels(worker).set(local.get(worker, 0))
            self.outstanding.labels(worker).set(outstanding.get(worker, 0))
            self.circuit_state.labels(worker).set(_STATE_VALUE[circuits.get(worker, "healthy")])
            self.success_rate.labels(worker).set(success.get(worker, 1.0))

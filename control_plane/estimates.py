"""`POST /v1/estimate`: how long a job of N tokens takes and what it costs on each instance type
of a pool (or each configured type) against a paid API's price. The arithmetic is
`control_plane/pricing.py`'s; this module gathers its inputs and says where each came from.

Inputs, never invented:

- throughput per (instance type, model): the operator's table (`CONTROL_PLANE_ESTIMATE_TABLE`, a
  JSON file; see docs/capacity.md "Estimates") — figures from a benchmark of that model on that
  type; an entry without `model_id` applies to any model and the answer says so. Without an
  entry, the best measurement of the pool's own workers on that type (`throughput.py`: vLLM's
  token counters, with the concurrency it was seen at). Neither: time and cost are `null` and a
  note says the throughput is unknown;
- price per hour: what the pool's running instances of that type were launched at (the cost
  ledger's figure), else the provider's current price (`prices` hook), else the table's `prices`,
  else unknown (cost `null`);
- the upstream API's $ per 1M input / output tokens: the request's `upstream_price_per_mtok`, else
  the table's `upstream`; without either there is no comparison and a note says so.

Table format:

    {"throughput": [{"instance_type": "g6.2xlarge", "model_id": "Qwen/Qwen2.5-14B-Instruct-AWQ",
                     "output_tokens_per_s": 450, "input_tokens_per_s": 6000, "startup_s": 420,
                     "note": "vLLM 0.6 bench, 32 concurrent"}],
     "prices": {"g6.2xlarge": 0.75},
     "upstream": {"name": "openai:gpt-4o-mini", "input_usd_per_mtok": 0.15,
                  "output_usd_per_mtok": 0.60}}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from control_plane.pricing import (
    InstanceOption,
    OptionEstimate,
    Throughput,
    UpstreamPrice,
    estimate_job,
)
from control_plane.throughput import Measurement
from fleet.catalog import NAME_PATTERN
from fleet.schemas import ID_PATTERN
from fleet.settings import SettingsError
from fleet.validation import ValidationError, parse, rule

MAX_TOKENS = 10**13
TYPE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"


@dataclass(frozen=True, slots=True)
class ThroughputEntry:
    instance_type: str = rule(pattern=TYPE_PATTERN)
    output_tokens_per_s: float = rule(ge=0.001, le=1e9)
    model_id: str | None = rule(None, pattern=ID_PATTERN)
    input_tokens_per_s: float | None = rule(None, ge=0.001, le=1e10)
    startup_s: float = rule(0.0, ge=0.0, le=86_400.0)  # boot + model load, billed
    note: str | None = rule(None, max_len=256)


@dataclass(frozen=True, slots=True)
class UpstreamEntry:
    name: str = rule(min_len=1, max_len=128)
    input_usd_per_mtok: float = rule(ge=0.0, le=100_000.0)
    output_usd_per_mtok: float = rule(ge=0.0, le=100_000.0)


@dataclass(frozen=True, slots=True)
class EstimateTable:
    throughput: list[ThroughputEntry] = rule(default_factory=list, max_len=1000)
    prices: dict[str, float] = rule(default_factory=dict, max_len=1000)
    upstream: UpstreamEntry | None = None

    @classmethod
    def load(cls, path: str | None, *, setting: str = "CONTROL_PLANE_ESTIMATE_TABLE",
             ) -> EstimateTable:
        if not path:
            return cls()
        try:
            data = orjson.loads(Path(path).read_bytes())
            return parse(cls, data)
        except OSError as exc:
            raise SettingsError(f"{setting}: cannot read {path}: {exc.strerror}") from None
        except orjson.JSONDecodeError as exc:
            raise SettingsError(f"{setting}: {path} is not valid JSON: {exc}") from None
        except ValidationError as exc:
            raise SettingsError(f"{setting}: {path}: {exc.message}") from None

    def entry(self, instance_type: str, model_id: str | None) -> ThroughputEntry | None:
        generic = None
        for entry in self.throughput:
            if entry.instance_type != instance_type:
                continue
            if entry.model_id is not None and entry.model_id == model_id:
                return entry
            if entry.model_id is None:
                generic = generic or entry
        return generic

    def instance_types(self, model_id: str | None) -> list[str]:
        seen: dict[str, None] = {}
        for entry in self.throughput:
            if entry.model_id is None or model_id is None or entry.model_id == model_id:
                seen.setdefault(entry.instance_type, None)
        return list(seen)


@dataclass(frozen=True, slots=True)
class UpstreamPriceBody:
    input: float = rule(ge=0.0, le=100_000.0)
    output: float = rule(ge=0.0, le=100_000.0)


@dataclass(frozen=True, slots=True)
class EstimateRequest:
    """`tokens`: input (prompt) tokens of the whole job; `output_tokens`: tokens generated."""

    tokens: int = rule(ge=0, le=MAX_TOKENS)
    output_tokens: int = rule(0, ge=0, le=MAX_TOKENS)
    pool: str | None = rule(None, pattern=NAME_PATTERN)
    model_id: str | None = rule(None, pattern=ID_PATTERN)
    instance_types: list[str] | None = rule(None, min_len=1, max_len=32)
    replicas: int = rule(1, ge=1, le=1000)
    upstream_price_per_mtok: float | UpstreamPriceBody | None = rule(None, ge=0.0, le=100_000.0)
    upstream: str | None = rule(None, min_len=1, max_len=128)  # a label for the comparison


PriceLookup = Callable[[str], tuple[float, str] | None]  # type -> ($/h, where it came from)
MeasuredLookup = Callable[[str], Measurement | None]  # type -> best recent measurement


def _no_measurement(instance_type: str) -> Measurement | None:
    return None


def build_estimate(request: EstimateRequest, table: EstimateTable, *, model_id: str | None,
                   instance_types: list[str], prices: list[PriceLookup],
                   measured: MeasuredLookup = _no_measurement) -> dict[str, Any]:
    notes: list[str] = []
    options: list[InstanceOption] = []
    described: list[dict[str, Any]] = []
    for instance_type in instance_types:
        entry = table.entry(instance_type, model_id)
        measurement = None if entry is not None else measured(instance_type)
        throughput = None
        throughput_view: dict[str, Any] | None = None
        if entry is not None:
            throughput = Throughput(entry.output_tokens_per_s, entry.input_tokens_per_s,
                                    source="configured")
            note = entry.note
            if entry.model_id is None and model_id is not None:
                note = (f"{note + '; ' if note else ''}configured for any model, "
                        f"not measured for {model_id}")
            throughput_view = {
                "output_tokens_per_s": entry.output_tokens_per_s,
                "input_tokens_per_s": entry.input_tokens_per_s, "startup_s": entry.startup_s,
                "source": "configured", "model_id": entry.model_id, "note": note}
        elif measurement is not None:
            throughput = measurement.throughput()
            throughput_view = {
                "output_tokens_per_s": round(measurement.output_tokens_per_s, 3),
                "input_tokens_per_s": None if measurement.input_tokens_per_s is None
                else round(measurement.input_tokens_per_s, 3),
                "startup_s": 0.0, "source": "measured", "model_id": model_id,
                "measured_at": measurement.at,
                "note": f"observed on the pool's workers at {measurement.concurrency:g} "
                        f"concurrent requests over {measurement.seconds:g} s; a higher "
                        "concurrency usually yields more; startup time not included"}
        price, price_source = None, None
        for lookup in prices:
            found = lookup(instance_type)
            if found is not None:
                price, price_source = found
                break
        options.append(InstanceOption(instance_type, price, throughput, request.replicas,
                                      entry.startup_s if entry else 0.0))
        described.append({
            "instance_type": instance_type, "replicas": request.replicas,
            "price_per_hour": price, "price_source": price_source,
            "throughput": throughput_view,
        })

    upstream = _upstream(request, table)
    if upstream is None:
        notes.append("no upstream price: pass upstream_price_per_mtok or configure "
                     "\"upstream\" in the estimate table")
    if not instance_types:
        notes.append("no instance types: name a pool with instance_types, pass "
                     "instance_types, or configure throughput in the estimate table")
    job = estimate_job(request.tokens, request.output_tokens, options, upstream)
    for view, result in zip(described, job.options, strict=True):
        view.update(_result(result))
    cheapest = job.cheapest()
    return {
        "object": "estimate", "input_tokens": request.tokens,
        "output_tokens": request.output_tokens, "pool": request.pool, "model_id": model_id,
        "options": described,
        "upstream": None if upstream is None or job.upstream is None else {
            "name": upstream.name, "input_usd_per_mtok": upstream.input_usd_per_mtok,
            "output_usd_per_mtok": upstream.output_usd_per_mtok, **_result(job.upstream)},
        "cheapest": None if cheapest is None else cheapest.name,
        "notes": notes,
    }


def _result(result: OptionEstimate) -> dict[str, Any]:
    return {"name": result.name,
            "hours": None if result.hours is None else round(result.hours, 6),
            "seconds": None if result.hours is None else round(result.hours * 3600.0, 3),
            "cost_usd": None if result.cost_usd is None else round(result.cost_usd, 6),
            "notes": list(result.notes)}


def _upstream(request: EstimateRequest, table: EstimateTable) -> UpstreamPrice | None:
    given = request.upstream_price_per_mtok
    if isinstance(given, UpstreamPriceBody):
        return UpstreamPrice(request.upstream or "upstream", given.input, given.output)
    if isinstance(given, float):
        return UpstreamPrice(request.upstream or "upstream", given, given)
    if table.upstream is not None:
        return UpstreamPrice(request.upstream or table.upstream.name,
                             table.upstream.input_usd_per_mtok,
                             table.upstream.output_usd_per_mtok)
    return None

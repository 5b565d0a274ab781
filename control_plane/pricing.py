"""Cost accounting (what the fleet has cost) and job estimates (what a job would cost where).

Cost so far: each instance costs `price_per_hour` x the hours from `launched_at` to its end (or
`now` while it runs). The price is the one recorded at launch: the Spot price then, or the
operator's on-demand figure. Spot prices drift a little while an instance runs, so this is an
estimate of the bill, close but not to the cent. An instance with no known price is reported in
`unpriced` and left out of the total: the total then says so (`complete=False`), it never guesses.

Job estimate for `input_tokens` + `output_tokens`, on each option:

    self-hosted   hours = startup_s/3600 + (output_tokens / output tok/s
                                           + input_tokens / input tok/s) / replicas / 3600
                  cost  = price_per_hour x replicas x hours
    upstream API  cost  = input_tokens/1e6 x $ per 1M input + output_tokens/1e6 x $ per 1M output

Inputs are the caller's, documented, never invented here: an instance type's throughput comes from
configuration or from a measurement (`Throughput.measured`, e.g. from two scrapes of vLLM's
`vllm:generation_tokens_total`), and is specific to a model, a quantisation and a batch size. With
no throughput the time and cost are *unknown* and the estimate says so; with no input rate the
prefill time is left out and a note says so (prefill is much faster than decoding on GPUs, but not
free).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Usage:
    """One instance's run, for accounting."""

    instance_id: str
    price_per_hour: float | None
    started_at: float
    ended_at: float | None = None  # None: still running


def usage_cost(usage: Usage, now: float) -> float | None:
    if usage.price_per_hour is None:
        return None
    end = now if usage.ended_at is None else min(usage.ended_at, now)
    return usage.price_per_hour * max(0.0, end - usage.started_at) / SECONDS_PER_HOUR


@dataclass(frozen=True, slots=True)
class CostSummary:
    total_usd: float  # the priced instances' cost so far
    per_hour_now: float  # $/h of the priced instances still running
    running: int
    unpriced: tuple[str, ...]  # instances whose price is unknown (left out of the totals)

    @property
    def complete(self) -> bool:
        return not self.unpriced


def cost_so_far(usages: Iterable[Usage], now: float) -> CostSummary:
    total = per_hour = 0.0
    running = 0
    unpriced = []
    for usage in usages:
        is_running = usage.ended_at is None or usage.ended_at > now
        running += is_running
        cost = usage_cost(usage, now)
        if cost is None:
            unpriced.append(usage.instance_id)
            continue
        total += cost
        if is_running:
            per_hour += usage.price_per_hour or 0.0
    return CostSummary(total, per_hour, running, tuple(unpriced))


@dataclass(frozen=True, slots=True)
class Throughput:
    output_tokens_per_s: float  # decode throughput of one replica at the batch size it serves
    input_tokens_per_s: float | None = None  # prefill throughput; None: not known
    source: str = "configured"  # "configured" or "measured"

    def __post_init__(self) -> None:
        if self.output_tokens_per_s <= 0:
            raise ValueError("output_tokens_per_s must be > 0")
        if self.input_tokens_per_s is not None and self.input_tokens_per_s <= 0:
            raise ValueError("input_tokens_per_s must be > 0")

    @classmethod
    def measured(cls, output_tokens: float, seconds: float, *, input_tokens: float | None = None,
                 ) -> Throughput:
        """From token counters read twice `seconds` apart (e.g. vLLM's *_tokens_total)."""
        if seconds <= 0 or output_tokens <= 0:
            raise ValueError("a measurement needs tokens > 0 over seconds > 0")
        input_rate = input_tokens / seconds if input_tokens else None
        return cls(output_tokens / seconds, input_rate, source="measured")


@dataclass(frozen=True, slots=True)
class InstanceOption:
    instance_type: str
    price_per_hour: float | None  # None: unknown
    throughput: Throughput | None  # None: unknown
    replicas: int = 1
    startup_s: float = 0.0  # boot + model load, billed before the first token (measured)


@dataclass(frozen=True, slots=True)
class UpstreamPrice:
    name: str  # e.g. "openai:gpt-4o-mini"
    input_usd_per_mtok: float
    output_usd_per_mtok: float


@dataclass(frozen=True, slots=True)
class OptionEstimate:
    name: str
    hours: float | None  # None: unknown
    cost_usd: float | None  # None: unknown
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class JobEstimate:
    input_tokens: int
    output_tokens: int
    options: tuple[OptionEstimate, ...]
    upstream: OptionEstimate | None

    def cheapest(self) -> OptionEstimate | None:
        known = [o for o in (*self.options, *([self.upstream] if self.upstream else []))
                 if o.cost_usd is not None]
        return min(known, key=lambda o: o.cost_usd or 0.0) if known else None


def estimate_option(option: InstanceOption, input_tokens: int, output_tokens: int,
                    ) -> OptionEstimate:
    name = (option.instance_type if option.replicas == 1
            else f"{option.replicas} x {option.instance_type}")
    if option.replicas < 1:
        raise ValueError("replicas must be >= 1")
    if option.throughput is None:
        return OptionEstimate(name, None, None,
                              ("throughput unknown: configure it or measure it",))
    notes = [f"throughput {option.throughput.source}"]
    seconds = output_tokens / option.throughput.output_tokens_per_s
    if option.throughput.input_tokens_per_s is not None:
        seconds += input_tokens / option.throughput.input_tokens_per_s
    elif input_tokens:
        notes.append("prefill time not counted: no input throughput given")
    hours = (option.startup_s + seconds / option.replicas) / SECONDS_PER_HOUR
    if option.price_per_hour is None:
        notes.append("price unknown")
        return OptionEstimate(name, hours, None, tuple(notes))
    return OptionEstimate(name, hours, option.price_per_hour * option.replicas * hours,
                          tuple(notes))


def estimate_job(input_tokens: int, output_tokens: int, options: Sequence[InstanceOption],
                 upstream: UpstreamPrice | None = None) -> JobEstimate:
    if input_tokens < 0 or output_tokens < 0:
        raise ValueError("token counts must be >= 0")
    estimates = tuple(estimate_option(o, input_tokens, output_tokens) for o in options)
    upstream_estimate = None
    if upstream is not None:
        cost = (input_tokens / 1e6 * upstream.input_usd_per_mtok
                + output_tokens / 1e6 * upstream.output_usd_per_mtok)
        upstream_estimate = OptionEstimate(
            upstream.name, None, cost, ("time depends on the provider's rate limits",))
    return JobEstimate(input_tokens, output_tokens, estimates, upstream_estimate)

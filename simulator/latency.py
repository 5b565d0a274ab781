"""The continuous-batching latency model: pure, with time passed in; no sleeping here.

An engine with continuous batching runs at most `max_num_seqs` sequences at once; the others
wait in a FIFO queue and enter the batch as running sequences finish. Every step costs more as the
batch grows, so the time to first token and the inter-token latency both rise with the number of
running sequences:

    load factor  f(running) = 1 + batch_slowdown * (running - 1) / max_num_seqs
    TTFT         = (ttft + prefill_per_token * prompt_tokens) * f(running) * slow_factor
    ITL          = itl * f(running) * slow_factor

each multiplied by (1 + jitter * u), u in [-1, 1) drawn from a seeded RNG. With the default
`batch_slowdown` 1.0, a full batch is about twice as slow as a lone request. Queueing time comes on
top of TTFT. With `ttft`, `itl` and `prefill_per_token` all zero the model is `instant` and the
engine never sleeps.

`BatchScheduler` is the admission state machine:

    submit(id)  -> running (a slot was free) | waiting (appended to the FIFO queue)
    finish(id)  -> frees its slot (or leaves the queue) and admits the oldest waiters
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Admission:
    """A waiting sequence that entered the running batch, and how long it waited."""

    seq_id: int
    queued_s: float


class BatchScheduler:
    def __init__(self, max_num_seqs: int) -> None:
        if max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {max_num_seqs}")
        self.max_num_seqs = max_num_seqs
        self._running: set[int] = set()
        self._waiting: OrderedDict[int, float] = OrderedDict()  # seq id -> time it arrived

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def is_running(self, seq_id: int) -> bool:
        return seq_id in self._running

    def waiting_ids(self) -> list[int]:
        return list(self._waiting)

    def submit(self, seq_id: int, now: float) -> bool:
        """Admit a new sequence; True if it runs at once, False if it waits its turn."""
        if seq_id in self._running or seq_id in self._waiting:
            raise ValueError(f"sequence {seq_id} was already submitted")
        if len(self._running) < self.max_num_seqs and not self._waiting:
            self._running.add(seq_id)
            return True
        self._waiting[seq_id] = now
        return False

    def finish(self, seq_id: int, now: float) -> list[Admission]:
        """Remove a sequence (done, cancelled or failed); returns the waiters admitted in its place.

        Unknown ids are ignored so that cleanup paths may call this more than once.
        """
        if self._waiting.pop(seq_id, None) is not None:
            return []
        self._running.discard(seq_id)
        admitted = []
        while self._waiting and len(self._running) < self.max_num_seqs:
            waiter, arrived = self._waiting.popitem(last=False)
            self._running.add(waiter)
            admitted.append(Admission(waiter, now - arrived))
        return admitted


@dataclass(frozen=True)
class LatencyModel:
    ttft_s: float
    itl_s: float
    max_num_seqs: int
    batch_slowdown: float = 1.0
    prefill_s_per_token: float = 0.0
    jitter: float = 0.0

    @property
    def instant(self) -> bool:
        """True when every latency is zero: the engine then never sleeps."""
        return self.ttft_s == 0 and self.itl_s == 0 and self.prefill_s_per_token == 0

    def load_factor(self, running: int) -> float:
        return 1.0 + self.batch_slowdown * max(running - 1, 0) / self.max_num_seqs

    def _noise(self, rng: random.Random | None) -> float:
        if self.jitter == 0 or rng is None:
            return 1.0
        return 1.0 + self.jitter * (2.0 * rng.random() - 1.0)

    def ttft(self, running: int, prompt_tokens: int, *, slow_factor: float = 1.0,
             rng: random.Random | None = None) -> float:
        """Seconds from entering the batch to the first token."""
        base = self.ttft_s + self.prefill_s_per_token * prompt_tokens
        if base == 0:
            return 0.0
        return base * self.load_factor(running) * slow_factor * self._noise(rng)

    def itl(self, running: int, *, slow_factor: float = 1.0,
            rng: random.Random | None = None) -> float:
        """Seconds between two tokens of one sequence."""
        if self.itl_s == 0:
            return 0.0
        return self.itl_s * self.load_factor(running) * slow_factor * self._noise(rng)

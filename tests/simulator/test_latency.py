"""The batching model with time passed in: cap, FIFO queue, TTFT and ITL growing with the batch."""

from __future__ import annotations

import random

import pytest

from simulator.latency import Admission, BatchScheduler, LatencyModel


def test_at_most_max_num_seqs_run_and_the_rest_wait() -> None:
    scheduler = BatchScheduler(2)
    assert scheduler.submit(1, now=0.0)
    assert scheduler.submit(2, now=0.0)
    assert not scheduler.submit(3, now=1.0)
    assert not scheduler.submit(4, now=2.0)
    assert (scheduler.running, scheduler.waiting) == (2, 2)


def test_finishing_admits_waiters_in_arrival_order_with_their_queue_time() -> None:
    scheduler = BatchScheduler(1)
    scheduler.submit(1, now=0.0)
    scheduler.submit(2, now=1.0)
    scheduler.submit(3, now=2.0)
    assert scheduler.finish(1, now=5.0) == [Admission(2, 4.0)]
    assert scheduler.is_running(2) and scheduler.waiting_ids() == [3]
    assert scheduler.finish(2, now=6.0) == [Admission(3, 4.0)]
    assert scheduler.finish(3, now=7.0) == []
    assert (scheduler.running, scheduler.waiting) == (0, 0)


def test_a_newcomer_never_overtakes_the_queue() -> None:
    scheduler = BatchScheduler(1)
    scheduler.submit(1, now=0.0)
    scheduler.submit(2, now=0.0)
    scheduler.finish(1, now=1.0)  # 2 takes the slot at once
    assert not scheduler.submit(3, now=1.0)
    assert scheduler.waiting_ids() == [3]


def test_leaving_the_queue_admits_nobody_and_frees_the_place() -> None:
    scheduler = BatchScheduler(1)
    scheduler.submit(1, now=0.0)
    scheduler.submit(2, now=0.0)
    scheduler.submit(3, now=0.0)
    assert scheduler.finish(2, now=1.0) == []
    assert scheduler.waiting_ids() == [3]
    assert scheduler.finish(1, now=2.0) == [Admission(3, 2.0)]


def test_finishing_twice_or_an_unknown_sequence_is_harmless() -> None:
    scheduler = BatchScheduler(1)
    scheduler.submit(1, now=0.0)
    scheduler.finish(1, now=1.0)
    assert scheduler.finish(1, now=1.0) == []
    assert scheduler.finish(99, now=1.0) == []


def test_submitting_the_same_sequence_twice_is_a_bug() -> None:
    scheduler = BatchScheduler(1)
    scheduler.submit(1, now=0.0)
    with pytest.raises(ValueError):
        scheduler.submit(1, now=0.0)


def test_ttft_and_itl_grow_with_the_number_running() -> None:
    model = LatencyModel(ttft_s=0.1, itl_s=0.01, max_num_seqs=100, batch_slowdown=1.0)
    assert model.ttft(1, 0) == pytest.approx(0.1)
    assert model.itl(1) == pytest.approx(0.01)
    ttfts = [model.ttft(n, 0) for n in (1, 10, 50, 100)]
    itls = [model.itl(n) for n in (1, 10, 50, 100)]
    assert ttfts == sorted(ttfts) and ttfts[0] < ttfts[-1]
    assert itls == sorted(itls) and itls[0] < itls[-1]
    # A full batch is about (1 + batch_slowdown) times as slow as a lone request.
    assert model.ttft(101, 0) == pytest.approx(0.2)


def test_prompt_length_slow_factor_and_zero_slowdown() -> None:
    model = LatencyModel(ttft_s=0.1, itl_s=0.01, max_num_seqs=8, batch_slowdown=0.0,
                         prefill_s_per_token=0.001)
    assert model.ttft(8, 100) == pytest.approx(0.2)
    assert model.ttft(1, 0, slow_factor=3.0) == pytest.approx(0.3)
    assert model.itl(8, slow_factor=2.0) == pytest.approx(0.02)


def test_zero_latencies_make_an_instant_model() -> None:
    model = LatencyModel(ttft_s=0.0, itl_s=0.0, max_num_seqs=4)
    assert model.instant
    assert model.ttft(4, 1000, slow_factor=10.0) == 0.0
    assert model.itl(4, slow_factor=10.0) == 0.0
    assert not LatencyModel(ttft_s=0.0, itl_s=0.001, max_num_seqs=4).instant


def test_jitter_is_bounded_and_repeats_under_the_same_seed() -> None:
    model = LatencyModel(ttft_s=0.1, itl_s=0.01, max_num_seqs=4, jitter=0.5)
    rng_a, rng_b = random.Random(3), random.Random(3)
    run_a = [model.itl(1, rng=rng_a) for _ in range(50)]
    run_b = [model.itl(1, rng=rng_b) for _ in range(50)]
    assert run_a == run_b
    assert len(set(run_a)) > 1
    assert all(0.005 <= value <= 0.015 for value in run_a)
    assert 0.05 <= model.ttft(1, 0, rng=random.Random(3)) <= 0.15

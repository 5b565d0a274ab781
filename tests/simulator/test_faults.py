"""Fault settings: validated run-time changes, seeded draws, crash counting."""

from __future__ import annotations

import pytest

from simulator.errors import RequestError
from simulator.faults import Decision, FaultConfig, FaultInjector


def test_a_patch_changes_only_the_fields_it_names() -> None:
    config = FaultConfig(error_rate=0.1, slow_factor=2.0).merged({"hang_rate": 0.2})
    assert config == FaultConfig(error_rate=0.1, hang_rate=0.2, slow_factor=2.0)
    assert FaultConfig(crash_after=3).merged({"crash_after": None}).crash_after is None


@pytest.mark.parametrize("patch", [
    {"error_rate": 1.5},
    {"error_rate": "high"},
    {"hang_rate": -0.1},
    {"slow_factor": 0},
    {"crash_after": -1},
    {"crash_after": 1.5},
    {"abort_stream_after_tokens": True},
    {"error_rate": 0.7, "hang_rate": 0.5},
    {"unknown": 1},
    ["error_rate"],
])
def test_bad_patches_are_refused_with_a_400(patch: object) -> None:
    with pytest.raises(RequestError) as caught:
        FaultConfig().merged(patch)
    assert caught.value.status == 400


def test_draws_repeat_under_the_same_seed_and_follow_the_rates() -> None:
    config = FaultConfig(error_rate=0.3, hang_rate=0.2)
    a, b = FaultInjector(config, seed=5), FaultInjector(config, seed=5)
    run_a = [a.draw() for _ in range(400)]
    assert run_a == [b.draw() for _ in range(400)]
    assert run_a != [FaultInjector(config, seed=6).draw() for _ in range(400)]
    errors = run_a.count(Decision.ERROR) / 400
    hangs = run_a.count(Decision.HANG) / 400
    assert 0.2 < errors < 0.4 and 0.1 < hangs < 0.3


def test_certain_error_and_no_faults() -> None:
    assert FaultInjector(FaultConfig(error_rate=1.0), 0).draw() is Decision.ERROR
    assert FaultInjector(FaultConfig(hang_rate=1.0), 0).draw() is Decision.HANG
    assert FaultInjector(FaultConfig(), 0).draw() is Decision.SERVE


def test_crash_comes_on_the_request_after_crash_after_counted_from_when_it_is_set() -> None:
    faults = FaultInjector(FaultConfig(crash_after=2), seed=0)
    assert [faults.must_crash() for _ in range(3)] == [False, False, True]
    faults.update({"crash_after": 1})
    assert [faults.must_crash() for _ in range(2)] == [False, True]
    faults.update({"crash_after": None})
    assert not faults.must_crash()


def test_reset_returns_to_the_faults_given_at_start() -> None:
    faults = FaultInjector(FaultConfig(error_rate=0.25), seed=0)
    faults.update({"error_rate": 1.0, "slow_factor": 4.0})
    assert faults.reset() == FaultConfig(error_rate=0.25)

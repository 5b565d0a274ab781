"""Chaos: one worker of four fails under steady SDK load - killed, hanging, or cut off by a stalled
network - and no request is lost silently: every one succeeds or fails visibly, in bounded time.

Each scenario loads the stack for ~10 s with 12 concurrent clients (half streaming), injects the
fault ~3.5 s in, and writes its figures (tests/chaos/conftest.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.chaos.load import ChaosLoad
from tests.chaos.stack import ChaosStack
from tests.support.tcp_proxy import StallingProxy

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

LOAD_S = 10.0
ROUTER_COUNTERS = ("flotilla_router_retries_total", "flotilla_router_stream_errors_total",
                   "flotilla_router_circuit_transitions_total")
FAULT_AT_S = 3.5


def _router_stream_errors(observed: dict[str, object]) -> float:
    counters = observed["router_counters"]
    assert isinstance(counters, dict)
    return sum(v for k, v in counters.items()
               if k.startswith("flotilla_router_stream_errors_total"))


async def _wait_busy(stack: ChaosStack, worker, at_least: int = 2) -> None:
    """Until the worker is serving requests (so the fault lands on requests in flight)."""
    async def busy() -> bool:
        return (await stack.sim_stats(worker))["running"] >= at_least
    await stack.wait_until(busy, timeout=10, what="requests running on the worker")


async def test_worker_sigkilled(chaos_stack: ChaosStack, record_figures) -> None:
    key = await chaos_stack.up(workers=4)
    router = chaos_stack.routers[0]
    doomed = chaos_stack.workers[0]
    load = ChaosLoad([router.url], key)
    observed: dict[str, object] = {}

    async def fault() -> None:
        await asyncio.sleep(FAULT_AT_S)
        await _wait_busy(chaos_stack, doomed)
        load.mark("fault")
        observed["in_flight_on_worker"] = (await chaos_stack.sim_stats(doomed))["running"]
        doomed.sim.kill()  # the machine is gone: engine and agent at once
        doomed.agent.kill()
        observed["router_dropped_worker_s"] = round(
            await chaos_stack.wait_router_workers(router, 3), 2)
        load.mark("recovered")

    await load.run(LOAD_S, during=fault())
    figures = load.summary()
    observed["router_counters"] = await chaos_stack.router_counters(router, *ROUTER_COUNTERS)
    record_figures("Worker SIGKILLed", "engine and agent of 1 of 4 workers SIGKILLed mid-load",
                   figures, **observed)
    load.assert_no_silent_loss()
    # Requests that had no byte out yet are retried on another worker; only streams already
    # relaying from the dead worker end, each with the router's error event.
    assert figures["failed"] == 0, figures
    assert figures["stream_cuts"] == 0, figures
    assert figures["stream_errors"] <= observed["in_flight_on_worker"], (figures, observed)
    assert set(figures["stream_errors_by_reason"]) <= {"stream_interrupted"}, figures
    # Every error event the router sent reached a client as an exception.
    assert figures["stream_errors"] == _router_stream_errors(observed), (figures, observed)


async def test_worker_hanging(chaos_stack: ChaosStack, record_figures) -> None:
    key = await chaos_stack.up(workers=4)
    router = chaos_stack.routers[0]
    stuck = chaos_stack.workers[0]
    load = ChaosLoad([router.url], key)
    observed: dict[str, object] = {}
    received_before = 0

    async def fault() -> None:
        nonlocal received_before
        await asyncio.sleep(FAULT_AT_S)
        load.mark("fault")
        received_before = (await chaos_stack.sim_stats(stuck))["received"]
        await chaos_stack.put_faults(stuck, hang_rate=1.0)  # accepts, never answers
        await asyncio.sleep(LOAD_S - FAULT_AT_S - 1)
        load.mark("recovered")
        observed["hanging_on_worker"] = (await chaos_stack.sim_stats(stuck))["hanging"]

    await load.run(LOAD_S, during=fault())
    figures = load.summary()
    observed["router_counters"] = await chaos_stack.router_counters(router, *ROUTER_COUNTERS)
    stats = await chaos_stack.sim_stats(stuck)
    observed["reached_the_hung_worker_after_the_fault"] = stats["received"] - received_before
    record_figures("Worker hanging", "1 of 4 engines accepts requests and never answers "
                   "(simulator hang_rate=1 via /admin/faults); router first-byte timeout 3 s",
                   figures, **observed)
    load.assert_no_silent_loss()
    # Nothing has reached the client when an engine hangs (vLLM sends no byte before the
    # first token): each hung attempt times out and is retried elsewhere, and the breaker
    # soon stops the router from trying it.
    assert figures["failed"] == 0, figures
    assert figures["stream_errors"] == 0 and figures["stream_cuts"] == 0, figures


async def test_network_to_one_worker_stalls(chaos_stack: ChaosStack, record_figures) -> None:
    proxies: list[StallingProxy] = []

    def through_proxy(sim_port: int) -> str:
        proxies.append(StallingProxy(sim_port))
        return proxies[-1].url

    # The router reaches worker 0 only through the proxy (its advertised URL); the agent and
    # the control plane's probes reach it directly, so only the data path goes quiet.
    key = await chaos_stack.up(worker_options=[{"advertise": through_proxy}, {}, {}, {}])
    router = chaos_stack.routers[0]
    proxy = await proxies[0].start()  # the router has not called any worker yet
    try:
        cut_off = chaos_stack.workers[0]
        load = ChaosLoad([router.url], key)
        observed: dict[str, object] = {}

        async def fault() -> None:
            await asyncio.sleep(FAULT_AT_S)
            await _wait_busy(chaos_stack, cut_off)
            load.mark("fault")
            observed["in_flight_on_worker"] = (await chaos_stack.sim_stats(cut_off))["running"]
            proxy.stall()
            stalled_at = time.monotonic()
            await asyncio.sleep(LOAD_S - FAULT_AT_S - 1)
            load.mark("recovered")
            observed["stalled_for_s"] = round(time.monotonic() - stalled_at, 1)

        await load.run(LOAD_S, during=fault())
    finally:
        await proxy.aclose()
    figures = load.summary()
    observed["router_counters"] = await chaos_stack.router_counters(router, *ROUTER_COUNTERS)
    observed["connections_through_proxy"] = proxy.connections
    record_figures("Network to one worker stalls", "a TCP proxy between the router and 1 of 4 "
                   "workers stops forwarding (no reset, silence); router first-byte and idle "
                   "timeouts 3 s", figures, **observed)
    load.assert_no_silent_loss()
    assert figures["failed"] == 0, figures
    assert figures["stream_cuts"] == 0, figures
    # Streams already relaying from the cut-off worker end with the idle-timeout error event.
    assert figures["stream_errors"] <= observed["in_flight_on_worker"], (figures, observed)
    assert figures["stream_errors"] == _router_stream_errors(observed), (figures, observed)

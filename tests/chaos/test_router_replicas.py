"""Chaos: one of three router replicas (sharing Redis) is SIGKILLed, or stopped with SIGTERM (a
rolling restart), under steady SDK load.

The clients spread over the three routers (each client loop has a home router) and a client
whose router refuses connections re-sends the request to the next router - what a load balancer
in front of the replicas does (there is no nginx on the test machines; the behaviour under test
is the routers', not the balancer's). Only requests in flight on the dead router can fail, and
they fail visibly (a connection error, a stream cut); the survivors stop counting the dead
replica's in-flight share once its reports go stale."""

from __future__ import annotations

import asyncio
import math
import signal

import pytest

from tests.chaos.load import ChaosLoad
from tests.chaos.stack import ChaosStack

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

LOAD_S = 10.0
FAULT_AT_S = 3.5


async def test_router_replica_killed_behind_two(chaos_stack: ChaosStack, record_figures) -> None:
    key = await chaos_stack.up(workers=3, routers=3)
    routers = chaos_stack.routers
    doomed, survivors = routers[1], [routers[0], routers[2]]

    async def peers_seen(count: int) -> bool:
        bodies = [await chaos_stack.router_readyz(r) for r in survivors]
        return all(body["peers"] == count for body in bodies)

    await chaos_stack.wait_until(lambda: peers_seen(2), timeout=15, what="replicas see peers")
    load = ChaosLoad([r.url for r in routers], key)
    observed: dict[str, object] = {}

    async def fault() -> None:
        await asyncio.sleep(FAULT_AT_S)
        load.mark("fault")
        doomed.proc.kill()
        await chaos_stack.wait_until(lambda: peers_seen(1), timeout=15,
                                     what="survivors drop the dead replica's report")
        load.mark("recovered")
        observed["survivors_dropped_dead_peer_s"] = round(
            load.marks["recovered"] - load.marks["fault"], 2)

    await load.run(LOAD_S, during=fault())
    figures = load.summary()
    homed_on_dead = math.ceil(load.concurrency / len(routers))
    observed["client_loops_homed_on_dead_router"] = homed_on_dead
    record_figures("Router replica killed", "1 of 3 router processes (shared Redis) SIGKILLed; "
                   "clients re-send to another router when theirs refuses connections",
                   figures, **observed)
    load.assert_no_silent_loss()
    # At most one request per client loop homed on the dead router was in flight there.
    lost_in_flight = figures["failed"] + figures["stream_cuts"] + figures["stream_errors"]
    assert lost_in_flight <= homed_on_dead, figures
    assert set(figures["failed_by_reason"]) <= {"connection_error"}, figures
    assert figures["client_failovers"] > 0, figures  # the dead router's clients moved on
    for router in survivors:
        assert (await chaos_stack.router_readyz(router))["workers"] == 3


async def test_router_replica_stopped_gracefully(chaos_stack: ChaosStack,
                                                 record_figures) -> None:
    """A rolling restart: SIGTERM to 1 of 3 routers. It stops accepting, finishes what it holds
    and exits; its clients move to the others."""
    key = await chaos_stack.up(workers=3, routers=3)
    routers = chaos_stack.routers
    stopping = routers[1]
    load = ChaosLoad([r.url for r in routers], key)
    observed: dict[str, object] = {}

    async def fault() -> None:
        await asyncio.sleep(FAULT_AT_S)
        load.mark("fault")
        stopping.proc.send_signal(signal.SIGTERM)
        observed["exit_code"] = await stopping.proc.wait_exit(timeout=30)
        load.mark("recovered")
        observed["stopped_in_s"] = round(load.marks["recovered"] - load.marks["fault"], 2)

    await load.run(LOAD_S, during=fault())
    figures = load.summary()
    record_figures("Router replica stopped (SIGTERM)", "1 of 3 router processes gets SIGTERM "
                   "(a rolling restart); clients re-send to another router when theirs refuses "
                   "connections", figures, **observed)
    load.assert_no_silent_loss()
    assert observed["exit_code"] == 0, observed
    assert figures["failed"] == 0 and figures["stream_errors"] == 0, figures
    assert figures["stream_cuts"] == 0, figures

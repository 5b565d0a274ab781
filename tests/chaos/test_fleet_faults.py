"""Chaos: the fleet around the workers fails under steady SDK load - a Spot notice on half the
fleet at once, Redis restarted empty, the control plane crashed and restarted. None of these
should cost a single request: draining workers finish what they hold, routers serve from their
snapshot while the store or the control plane is away."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from tests.chaos.load import ChaosLoad
from tests.chaos.stack import ChaosStack, Router
from tests.support.fake_imds import FakeImds
from tests.support.http_server import serve_http

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

LOAD_S = 10.0
FAULT_AT_S = 3.5


class ReadyzWatch:
    """Polls a router's /readyz during a fault: the fewest workers it held, whether it said it
    served from its snapshot."""

    def __init__(self, stack: ChaosStack, router: Router) -> None:
        self.stack, self.router = stack, router
        self.min_workers: int | None = None
        self.served_from_snapshot = False
        self.not_ready = 0

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[ReadyzWatch]:
        task = asyncio.create_task(self._poll())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                response = await self.stack.http.get(self.router.url + "/readyz")
                body = response.json()
                self.not_ready += response.status_code != 200
                self.served_from_snapshot |= bool(body["serving_from_snapshot"])
                workers = body["workers"]
                self.min_workers = (workers if self.min_workers is None
                                    else min(self.min_workers, workers))
            await asyncio.sleep(0.05)


async def test_spot_notice_on_half_the_fleet(chaos_stack: ChaosStack, record_figures) -> None:
    fakes = [FakeImds(instance_id=f"chaos-{i}") for i in range(4)]
    async with contextlib.AsyncExitStack() as servers:
        urls = [await servers.enter_async_context(serve_http(fake.app)) for fake in fakes]
        key = await chaos_stack.up(worker_options=[{"imds_url": url} for url in urls])
        router = chaos_stack.routers[0]
        noticed = chaos_stack.workers[:2]
        load = ChaosLoad([router.url], key)
        observed: dict[str, object] = {}

        async def fault() -> None:
            await asyncio.sleep(FAULT_AT_S)
            load.mark("fault")
            deadline = time.time() + 30
            for fake in fakes[:2]:
                fake.interrupt(deadline)  # same type, same zone: the notices come together
            observed["router_dropped_draining_s"] = round(
                await chaos_stack.wait_router_workers(router, 2, timeout=10), 2)
            received = [(await chaos_stack.sim_stats(w))["received"] for w in noticed]
            codes = await asyncio.gather(*[w.agent.wait_exit(timeout=20) for w in noticed])
            load.mark("recovered")
            observed["agents_exit_codes"] = list(codes)
            observed["drained_in_s"] = round(time.monotonic() - load.marks["fault"], 2)
            await asyncio.sleep(1.0)
            after = [(await chaos_stack.sim_stats(w))["received"] for w in noticed]
            observed["requests_reaching_drained_workers_after_router_dropped_them"] = [
                b - a for a, b in zip(received, after, strict=True)]
            for worker in noticed:  # the deadline: the machines go away
                worker.sim.kill()

        await load.run(LOAD_S, during=fault())
    figures = load.summary()
    record_figures("Spot notice on half the fleet",
                   "IMDSv2 spot/instance-action on 2 of 4 workers at once (fake IMDS); agents "
                   "drain, deregister and exit; then the machines vanish", figures, **observed)
    load.assert_no_silent_loss()
    assert observed["agents_exit_codes"] == [0, 0], observed
    assert observed["requests_reaching_drained_workers_after_router_dropped_them"] == [0, 0]
    # In-flight requests finished on the draining workers: nothing failed at all.
    assert figures["failed"] == 0 and figures["stream_errors"] == 0, figures
    assert figures["stream_cuts"] == 0, figures


async def test_redis_restarted_empty(chaos_stack: ChaosStack, record_figures) -> None:
    key = await chaos_stack.up(workers=3)
    router = chaos_stack.routers[0]
    load = ChaosLoad([router.url], key)
    watch = ReadyzWatch(chaos_stack, router)
    observed: dict[str, object] = {}

    async def fault() -> None:
        await asyncio.sleep(FAULT_AT_S)
        async with watch.watching():
            load.mark("fault")
            chaos_stack.redis.stop()  # no persistence: it comes back empty (a flush)
            await asyncio.sleep(2.0)
            chaos_stack.redis.start()

            async def reseeded() -> bool:
                body = await chaos_stack.router_readyz(router)
                return (body["store"] == "ok" and not body["epoch_missing"]
                        and body["workers"] == 3)

            await chaos_stack.wait_until(reseeded, timeout=15, what="store reseeded")
            load.mark("recovered")
        observed["store_down_s"] = 2.0
        observed["recovered_after_s"] = round(load.marks["recovered"] - load.marks["fault"], 2)
        observed["router_min_workers_during_fault"] = watch.min_workers
        observed["router_said_serving_from_snapshot"] = watch.served_from_snapshot
        observed["router_readyz_503s"] = watch.not_ready

    await load.run(LOAD_S, during=fault())
    figures = load.summary()
    record_figures("Redis restarted empty", "redis-server stopped for 2 s and started again "
                   "without data; the control plane reseeds it", figures, **observed)
    load.assert_no_silent_loss()
    assert figures["failed"] == 0 and figures["stream_errors"] == 0, figures
    assert figures["stream_cuts"] == 0, figures
    assert observed["router_min_workers_during_fault"] == 3, observed
    assert observed["router_said_serving_from_snapshot"] is True, observed
    ready = [w for w in await chaos_stack.admin_workers() if w["ready"]]
    assert len(ready) == 3


async def test_control_plane_restarted(chaos_stack: ChaosStack, record_figures) -> None:
    key = await chaos_stack.up(workers=3)
    router = chaos_stack.routers[0]
    load = ChaosLoad([router.url], key)
    watch = ReadyzWatch(chaos_stack, router)
    observed: dict[str, object] = {}

    async def fault() -> None:
        await asyncio.sleep(FAULT_AT_S)
        assert chaos_stack.control_plane_proc is not None
        async with watch.watching():
            load.mark("fault")
            chaos_stack.control_plane_proc.kill()  # a crash: no graceful shutdown
            await asyncio.sleep(2.0)
            proc = chaos_stack.start_control_plane()
            await proc.wait_http(chaos_stack.control_plane_url + "/healthz", timeout=30)

            async def all_ready() -> bool:
                workers = await chaos_stack.admin_workers()
                return len([w for w in workers if w["ready"]]) == 3

            await chaos_stack.wait_until(all_ready, timeout=15, what="workers ready again")
            load.mark("recovered")
        observed["control_plane_down_s"] = 2.0
        observed["recovered_after_s"] = round(load.marks["recovered"] - load.marks["fault"], 2)
        observed["router_min_workers_during_fault"] = watch.min_workers
        observed["router_readyz_503s"] = watch.not_ready

    await load.run(LOAD_S, during=fault())
    figures = load.summary()
    record_figures("Control plane restarted", "control plane SIGKILLed, started again 2 s "
                   "later on the same store", figures, **observed)
    load.assert_no_silent_loss()
    assert figures["failed"] == 0 and figures["stream_errors"] == 0, figures
    assert figures["stream_cuts"] == 0, figures
    assert observed["router_min_workers_during_fault"] == 3, observed

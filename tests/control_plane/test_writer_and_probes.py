"""The group-commit writer's ordering and the probe scheduler's spreading (no sleeping on time)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from control_plane.metrics import ControlPlaneMetrics
from control_plane.probes import ProbeRequests, ProbeTarget, ReadinessProber
from control_plane.writer import WorkerWriter
from fleet.memory_store import MemoryFleetStore
from fleet.schemas import WorkerRecord


def record(worker_id: str = "w1", model_id: str = "m1", **changes: object) -> WorkerRecord:
    base = WorkerRecord(worker_id=worker_id, instance_id="i", model_id=model_id, engine="vllm",
                        url="http://127.0.0.1:1", agent_url="http://127.0.0.1:2",
                        registered_at=1.0, last_heartbeat=1.0)
    return base.replace(**changes)


async def run_writer(store: MemoryFleetStore) -> tuple[WorkerWriter, asyncio.Task[None]]:
    writer = WorkerWriter(store, ControlPlaneMetrics(CollectorRegistry()))
    return writer, asyncio.create_task(writer.run())


async def test_the_newest_change_of_a_worker_wins_and_is_written_once() -> None:
    store = MemoryFleetStore()
    writer, task = await run_writer(store)
    for depth in range(5):
        writer.save(record(queue_depth=depth), ready=True)
    assert await writer.committed(5) is None
    assert (await store.get_worker("w1")).queue_depth == 4
    assert [r.worker_id for r in (await store.ready_workers())["m1"]] == ["w1"]
    await writer.aclose(task)


async def test_a_model_change_leaves_the_old_ready_set_and_a_late_delete_wins() -> None:
    store = MemoryFleetStore()
    writer, task = await run_writer(store)
    writer.save(record(model_id="old"), ready=True)
    await writer.committed(5)
    writer.delete("w1")  # re-registration with another model: delete first, then save
    writer.save(record(model_id="new"), ready=True)
    await writer.committed(5)
    assert set(await store.ready_workers()) == {"new"}
    writer.save(record(model_id="new", queue_depth=9), ready=True)
    writer.delete("w1")  # deregistered after the save was queued: nothing is written back
    await writer.committed(5)
    assert await store.get_worker("w1") is None
    assert await store.ready_workers() == {}
    await writer.aclose(task)


class Subject:
    def __init__(self, count: int) -> None:
        self.targets = [ProbeTarget(f"w{i}", 1, f"http://127.0.0.1:1/{i}/readyz")
                        for i in range(count)]

    def probe_targets(self, only: set[str] | None) -> list[ProbeTarget]:
        return [t for t in self.targets if only is None or t.worker_id in only]

    def apply_probe(self, *args: object) -> None:
        return None


async def test_periodic_probes_are_spread_over_the_interval_and_never_repeated_early() -> None:
    subject = Subject(1000)
    prober = ReadinessProber(subject, ProbeRequests(), None,  # type: ignore[arg-type]
                             interval_s=10.0, timeout_s=1.0, concurrency=8,
                             metrics=ControlPlaneMetrics(CollectorRegistry()))
    seen: dict[str, list[float]] = {}
    per_tick = []
    for step in range(0, 201):  # 20 s in ticks of 0.1 s
        now = step / 10
        due = prober.due(now)
        per_tick.append(len(due))
        for target in due:
            seen.setdefault(target.worker_id, []).append(now)
    assert len(seen) == 1000  # every worker probed within the first interval
    assert max(per_tick) < 60  # ~10 per tick on average, never the whole fleet at once
    for times in seen.values():
        assert all(b - a >= 10.0 - 1e-9 for a, b in zip(times, times[1:], strict=False))
        assert 1 <= len(times) <= 3

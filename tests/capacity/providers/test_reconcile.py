"""Reconciliation: adopt, terminate, forget — pure rules first, then against moto and a store."""

from __future__ import annotations

from typing import Any

from control_plane.providers.base import Instance, LaunchRequest
from control_plane.providers.reconcile import (
    ReconcileRules,
    plan_reconcile,
    reconcile_once,
)
from fleet.catalog import Pool
from fleet.memory_store import MemoryFleetStore
from fleet.schemas import WorkerRecord
from fleet.store import INSTANCES, POOLS

NOW = 100_000.0


def instance(instance_id: str, pool: str = "qwen", launched_at: float = NOW - 3600,
             state: str = "running", **overrides: Any) -> Instance:
    values: dict[str, Any] = dict(
        instance_id=instance_id, provider="aws", provider_instance_id=f"i-{instance_id}",
        pool=pool, instance_type="g5.2xlarge", zone="us-east-1a", market="spot",
        private_ip="10.0.0.9", launched_at=launched_at, price_per_hour=0.6, state=state)
    values.update(overrides)
    return Instance(**values)


def worker(worker_id: str, instance_id: str, status: str = "ready",
           registered_at: float = NOW - 3000, provider: str = "aws") -> WorkerRecord:
    return WorkerRecord(worker_id=worker_id, instance_id=instance_id, model_id="m", engine="vllm",
                        url="http://10.0.0.9:8000", agent_url="http://10.0.0.9:8080",
                        registered_at=registered_at, last_heartbeat=NOW, status=status,
                        provider=provider, pool="qwen")


POOLS_QWEN = {"qwen": Pool(model_id="m", provider="aws", max_replicas=4,
                           instance_types=["g5.2xlarge"])}


def kinds(actions) -> set[tuple[str, str]]:
    return {(a.kind, a.instance_id) for a in actions}


def test_tagged_instance_the_store_forgot_is_adopted_with_its_facts() -> None:
    listed = [instance("a"), instance("b")]
    docs = {"a": listed[0].to_doc()}
    actions = plan_reconcile(provider="aws", listed=listed, docs=docs, workers=[],
                             pools=POOLS_QWEN, now=NOW)
    assert kinds(actions) == {("adopt", "b")}
    assert actions[0].instance == listed[1]
    assert "tagged as ours" in actions[0].reason


def test_instance_of_a_deleted_pool_is_terminated() -> None:
    listed = [instance("a", pool="gone"), instance("b")]
    docs = {i.instance_id: i.to_doc() for i in listed}
    actions = plan_reconcile(provider="aws", listed=listed, docs=docs, workers=[],
                             pools=POOLS_QWEN, now=NOW)
    assert kinds(actions) == {("terminate", "a")}
    assert "no longer exists" in actions[0].reason


def test_unknown_pools_never_terminate_anything() -> None:
    listed = [instance("a", pool="gone"), instance("b")]
    actions = plan_reconcile(provider="aws", listed=listed, docs={}, workers=[], pools=None,
                             now=NOW)
    assert kinds(actions) == {("adopt", "a"), ("adopt", "b")}


def test_surplus_over_max_replicas_terminates_non_serving_then_newest() -> None:
    pools = {"qwen": Pool(model_id="m", provider="aws", max_replicas=2,
                          instance_types=["g5.2xlarge"])}
    listed = [instance("old", launched_at=NOW - 900), instance("new", launched_at=NOW - 100),
              instance("booting", launched_at=NOW - 500), instance("mid", launched_at=NOW - 300)]
    docs = {i.instance_id: i.to_doc() for i in listed}
    workers = [worker("w-old", "old"), worker("w-new", "new"), worker("w-mid", "mid"),
               worker("w-boot", "booting", status="starting")]
    actions = plan_reconcile(provider="aws", listed=listed, docs=docs, workers=workers,
                             pools=pools, now=NOW)
    assert kinds(actions) == {("terminate", "booting"), ("terminate", "new")}


def test_document_of_a_vanished_instance_is_forgotten_with_its_worker_after_the_grace() -> None:
    docs = {"a": instance("a").to_doc(), "young": instance("young", launched_at=NOW - 10).to_doc(),
            "local1": instance("local1", provider="local").to_doc()}
    workers = [worker("w-a", "a"), worker("w-young", "young")]
    actions = plan_reconcile(provider="aws", listed=[instance("x", state="shutting-down")],
                             docs=docs, workers=workers, pools=POOLS_QWEN, now=NOW,
                             rules=ReconcileRules(grace_s=300))
    assert kinds(actions) == {("forget", "a")}
    assert actions[0].worker_ids == ("w-a",)


def test_worker_on_an_unknown_instance_is_forgotten() -> None:
    workers = [worker("w-orphan", "nobody"), worker("w-static", "box", provider="static"),
               worker("w-fresh", "fresh", registered_at=NOW - 5)]
    actions = plan_reconcile(provider="aws", listed=[], docs={}, workers=workers,
                             pools=POOLS_QWEN, now=NOW)
    assert kinds(actions) == {("forget", "nobody")}
    assert actions[0].worker_ids == ("w-orphan",)


# Against moto and a real store ---------------------------------------------------------------

def launch_request(count: int) -> LaunchRequest:
    return LaunchRequest(pool="qwen", model_id="m", engine="vllm", count=count,
                         control_plane_url="http://10.0.0.5:8003", instance_types=("g5.2xlarge",))


async def store_with_pools(pools: dict[str, Pool]) -> MemoryFleetStore:
    store = MemoryFleetStore()
    await store.ensure_epoch("epoch-1")
    for name, pool in pools.items():
        await store.put_doc(POOLS, name, pool)
    return store


async def test_restart_adopts_what_was_launched_but_never_recorded(make_aws_provider) -> None:
    store = await store_with_pools(POOLS_QWEN)
    first = make_aws_provider()
    recorded, unrecorded = (await first.launch(launch_request(2))).instances
    await store.put_doc(INSTANCES, recorded.instance_id, recorded.to_doc())
    await first.aclose()  # the control plane "crashes" before recording the second

    restarted = make_aws_provider()
    actions = await reconcile_once(restarted, store, now=NOW)
    assert kinds(actions) == {("adopt", unrecorded.instance_id)}
    docs = await store.get_docs(INSTANCES)
    assert set(docs) == {recorded.instance_id, unrecorded.instance_id}
    assert docs[unrecorded.instance_id]["private_ip"] == unrecorded.private_ip
    assert docs[unrecorded.instance_id]["provider"] == "aws"
    assert [e.kind for e in await store.recent_events()] == ["instance.adopted"]
    assert await reconcile_once(restarted, store, now=NOW) == []  # converged


async def test_store_loss_adopts_everything_and_terminates_nothing_until_pools_return(
        make_aws_provider) -> None:
    store = await store_with_pools(POOLS_QWEN)
    provider = make_aws_provider()
    launched = (await provider.launch(launch_request(2))).instances
    store.flush()  # Redis lost its data: no epoch, no pools, no documents

    actions = await reconcile_once(make_aws_provider(), store, now=NOW)
    assert kinds(actions) == {("adopt", i.instance_id) for i in launched}
    assert len(await provider.list_instances()) == 2

    # The control plane writes its state back, without the pool (deleted meanwhile).
    await store.ensure_epoch("epoch-2")
    actions = await reconcile_once(provider, store, now=NOW)
    assert kinds(actions) == {("terminate", i.instance_id) for i in launched}
    assert await provider.list_instances() == []

    # Once gone, the documents are forgotten (past the grace period).
    later = max(i.launched_at for i in launched) + 3600
    actions = await reconcile_once(provider, store, now=later)
    assert kinds(actions) == {("forget", i.instance_id) for i in launched}
    assert await store.get_docs(INSTANCES) == {}


async def test_instance_terminated_outside_is_forgotten_with_its_worker(
        make_aws_provider) -> None:
    store = await store_with_pools(POOLS_QWEN)
    provider = make_aws_provider()
    [gone] = (await provider.launch(launch_request(1))).instances
    await store.put_doc(INSTANCES, gone.instance_id, gone.to_doc())
    record = worker("w-gone", gone.instance_id)
    await store.save_workers([(record, True)])
    await provider.terminate([gone.instance_id])  # e.g. a Spot interruption took it

    assert await reconcile_once(provider, store, now=gone.launched_at + 10) == []  # grace
    actions = await reconcile_once(provider, store, now=gone.launched_at + 3600)
    assert kinds(actions) == {("forget", gone.instance_id)}
    assert await store.get_worker("w-gone") is None
    assert await store.get_docs(INSTANCES) == {}

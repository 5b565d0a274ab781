"""The control plane driving EC2 (moto's server behind a fault-injecting proxy): launches over
the pool's types with tags and user-data, falls back when a type has no capacity, terminates on
scale-down, and adopts what a crashed control plane launched but never recorded."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from control_plane.app import create_app
from control_plane.services import ControlPlane
from control_plane.settings import ControlPlaneSettings
from fleet.redis_store import RedisFleetStore
from fleet.store import INSTANCES
from tests.capacity.providers.test_aws import describe, user_data
from tests.support.asgi import asgi_client
from tests.support.ec2_faults import Ec2FaultProxy, Refusal
from tests.support.moto_server import MotoServer
from tests.support.waiting import eventually

ADMIN = {"authorization": "Bearer admin-token-for-aws-e2e-0123"}
POOL = {"model_id": "org/big-model", "engine": "vllm", "provider": "aws", "min_replicas": 2,
        "max_replicas": 3, "instance_types": ["g5.xlarge", "g6.xlarge"],
        "scale_to_zero_after_s": None}


@contextlib.asynccontextmanager
async def control_plane(redis_url: str, prefix: str, provider: Any
                        ) -> AsyncIterator[tuple[httpx.AsyncClient, ControlPlane]]:
    settings = ControlPlaneSettings(
        admin_token=ADMIN["authorization"].split()[1], providers=(),
        public_url="http://10.0.0.5:8003", autoscale_interval_s=0.2,
        autoscale_interval_at_zero_s=0.2, reconcile_interval_s=0.3, reconcile_grace_s=600,
        launch_retry_s=0.2, store_check_interval_s=0.2, log_level="debug")
    store = RedisFleetStore(redis_url, prefix=prefix)
    try:
        app = create_app(settings, store=store, providers={"aws": provider})
        async with asgi_client(app) as client:
            yield client, app.state.cp
    finally:
        await store.aclose()


async def test_launch_fallback_tags_userdata_scale_down_and_adoption(
        redis_server: Any, key_prefix: str, make_aws_provider: Callable[..., Any],
        ec2_proxy: Ec2FaultProxy, moto_server: MotoServer) -> None:
    ec2_proxy.refuse["g5.xlarge"] = Refusal("InsufficientInstanceCapacity", market="spot")
    async with control_plane(redis_server.url, key_prefix, make_aws_provider()) as (client, cp):
        reply = await client.put("/v1/pools/big", json=POOL, headers=ADMIN)
        assert reply.status_code == 201, reply.text
        await eventually(lambda: len(cp.capacity.book.of_pool("big")) == 2, timeout=60,
                    message="two instances launched")
        instances = cp.capacity.book.of_pool("big")
        # g5 had no Spot capacity: both replicas went to the next type, spread over zones.
        assert {i.instance_type for i in instances} == {"g6.xlarge"}
        assert len({i.zone for i in instances}) == 2
        assert {i.market for i in instances} == {"spot"}
        tried = [p["InstanceType"] for p in ec2_proxy.actions("RunInstances")]
        assert tried.count("g5.xlarge") >= 1 and tried.count("g6.xlarge") == 2
        metrics = (await client.get("/metrics")).text
        assert ('flotilla_launch_failures_total{instance_type="g5.xlarge",pool="big",'
                'reason="InsufficientInstanceCapacity"}') in metrics

        first = instances[0]
        described = await describe(moto_server, first.provider_instance_id)
        tags = {t["Key"]: t["Value"] for t in described["Tags"]}
        assert tags["flotilla:pool"] == "big"
        assert tags["flotilla:instance-id"] == first.instance_id
        assert tags["flotilla:model"] == "org/big-model"
        script = await user_data(moto_server, first.provider_instance_id)
        assert "CONTROL_PLANE_URL=http://10.0.0.5:8003" in script
        assert f"INSTANCE_ID={first.instance_id}" in script
        assert "MODEL_ID=org/big-model" in script
        stored = await cp.store.get_docs(INSTANCES)
        assert set(stored) == {i.instance_id for i in instances}
        assert stored[first.instance_id]["private_ip"] == described["PrivateIpAddress"]
        events = (await client.get("/v1/events?limit=1000", headers=ADMIN)).json()["data"]
        launched = [e for e in events if e["kind"] == "instance.launched"]
        assert len(launched) == 2 and launched[0]["data"]["instance_type"] == "g6.xlarge"

        # Scale down by hand: no worker registered yet (booting), so released at once.
        reply = await client.put("/v1/pools/big", json={**POOL, "min_replicas": 0},
                                 headers=ADMIN)
        assert reply.status_code == 200
        reply = await client.post("/v1/pools/big/scale", json={"replicas": 1}, headers=ADMIN)
        assert reply.status_code == 200, reply.text
        await eventually(lambda: len(cp.capacity.book.of_pool("big")) == 1, timeout=40,
                    message="one instance released")
        gone = ({i.instance_id for i in instances}
                - {i.instance_id for i in cp.capacity.book.of_pool("big")}).pop()
        gone_id = next(i.provider_instance_id for i in instances if i.instance_id == gone)
        state = (await describe(moto_server, gone_id))["State"]["Name"]
        assert state in ("shutting-down", "terminated")
        kept = cp.capacity.book.of_pool("big")[0]

    # A crash between launch and record: the document is lost. Removed only once this control
    # plane has stopped, or its own reconcile loop may adopt the instance first (then the new
    # control plane finds the document and has nothing to adopt).
    store = RedisFleetStore(redis_server.url, prefix=key_prefix)
    try:
        assert await store.delete_doc(INSTANCES, kept.instance_id)
        assert not [e for e in await store.recent_events(1000)
                    if e.kind == "instance.adopted" and e.subject == kept.instance_id]
    finally:
        await store.aclose()

    # A new control plane on the same store and cluster adopts the unrecorded instance and
    # leaks nothing.
    async with control_plane(redis_server.url, key_prefix, make_aws_provider()) as (client, cp):
        assert cp.capacity.book.get(kept.instance_id) is None  # nothing recorded at start
        await eventually(lambda: cp.capacity.book.get(kept.instance_id) is not None, timeout=40,
                    message="instance adopted")

        async def adopted_event() -> bool:
            events = (await client.get("/v1/events?limit=1000", headers=ADMIN)).json()["data"]
            return any(e["kind"] == "instance.adopted" and e["subject"] == kept.instance_id
                       for e in events)
        try:
            await eventually(adopted_event, timeout=30, message="adoption recorded on the timeline")
        except AssertionError:
            newest = (await client.get("/v1/events?limit=30", headers=ADMIN)).json()["data"]
            raise AssertionError(
                f"no instance.adopted event for {kept.instance_id}; newest events: "
                f"{[(e['kind'], e['subject']) for e in newest]}; writer idle: "
                f"{await cp.writer.drained(timeout=1.0)}") from None
        listed = await cp.capacity.providers["aws"].list_instances("big")
        assert {i.instance_id for i in listed} == {kept.instance_id}
        cost = (await client.get("/v1/cost", headers=ADMIN)).json()
        assert cost["pools"]["big"]["instances"] == 1

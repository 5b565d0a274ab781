"""The hooks bursts use (floors, pool views), the cost ledger and a manual scale, on the embedded
store with the local provider; instances are still booting (a long simulated boot), so no process
is started and releasing them is immediate."""

from __future__ import annotations

from pathlib import Path

from control_plane.app import create_app
from control_plane.settings import ControlPlaneSettings
from fleet.memory_store import MemoryFleetStore
from tests.support.asgi import asgi_client
from tests.support.waiting import eventually

TOKEN = "admin-token-for-hooks-0123456"
ADMIN = {"authorization": f"Bearer {TOKEN}"}


async def test_floors_views_cost_and_manual_scale(tmp_path: Path) -> None:
    settings = ControlPlaneSettings(
        admin_token=TOKEN, autoscale_interval_s=0.1, autoscale_interval_at_zero_s=0.1,
        scale_down_window_s=0.0, scale_down_periods=1, local_workdir=str(tmp_path),
        local_boot_delay_s=600.0, local_prices=("sim-gpu=0.5",), reconcile_interval_s=600)
    app = create_app(settings, store=MemoryFleetStore())
    async with asgi_client(app) as client:
        cp = app.state.cp
        reply = await client.put("/v1/pools/p", headers=ADMIN, json={
            "model_id": "m", "min_replicas": 0, "max_replicas": 3,
            "scale_to_zero_after_s": None, "max_price_per_hour": 0.5})
        assert reply.status_code == 201

        cp.capacity.set_floor("p", "burst_1", 2)
        await eventually(lambda: cp.capacity.pool_view("p").starting == 2, timeout=10,
                    message="two replicas for the floor")
        view = cp.capacity.pool_view("p")
        assert view.desired == 2 and view.ready == 0 and view.floors == {"burst_1": 2}
        assert {i.state for i in view.instances} == {"launching"}
        assert {(i.instance_type, i.price_per_hour, i.market) for i in view.instances} == \
            {("sim-gpu", 0.5, "spot")}
        assert cp.costs.rate_usd_per_hour("p") == 1.0
        cost = (await client.get("/v1/cost", headers=ADMIN)).json()
        assert cost["per_hour_usd"] == 1.0 and cost["pools"]["p"]["instances"] == 2
        status = (await client.get("/v1/pools/p", headers=ADMIN)).json()["status"]
        assert status["desired_replicas"] == 2 and status["starting_replicas"] == 2
        assert status["cost_per_hour_usd"] == 1.0
        assert status["last_decision"]["direction"] == "up"
        metrics = (await client.get("/metrics")).text
        assert 'flotilla_pool_max_cost_per_hour_usd{pool="p"} 1.5' in metrics
        assert 'flotilla_pool_starting_replicas{pool="p"} 2.0' in metrics

        # A manual count above max is clamped; the spending cap (0.5 x 3) still holds.
        reply = await client.post("/v1/pools/p/scale", headers=ADMIN, json={"replicas": 9})
        assert reply.status_code == 200
        await eventually(lambda: cp.capacity.pool_view("p").starting == 3, timeout=10,
                    message="three replicas")
        bad = await client.post("/v1/pools/p/scale", headers=ADMIN, json={"replicas": -1})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "replicas"
        assert (await client.post("/v1/pools/nope/scale", headers=ADMIN,
                                  json={"replicas": 1})).status_code == 404

        # Floors cleared, scaled down by hand: booting replicas are released at once.
        cp.capacity.clear_floor("p", "burst_1")
        await client.post("/v1/pools/p/scale", headers=ADMIN, json={"replicas": 0})
        await eventually(lambda: cp.capacity.pool_view("p").starting == 0, timeout=10,
                    message="released")
        view = cp.capacity.pool_view("p")
        assert {i.state for i in view.instances} == {"terminated"}
        assert cp.costs.rate_usd_per_hour("p") == 0.0
        assert cp.costs.spent_usd("p") > 0.0
        assert await cp.capacity.providers["local"].list_instances() == []
        kinds = [e["kind"] for e in (await client.get(
            "/v1/events?limit=500", headers=ADMIN)).json()["data"]]
        assert "autoscaler.manual" in kinds and "instance.terminated" in kinds

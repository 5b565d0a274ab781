"""/readyz reasons against a real simulator: model not listed, warm-up failing, engine gone."""

from __future__ import annotations

import httpx

from tests.worker_agent.conftest import Stack, eventually


async def test_readyz_names_the_first_unmet_condition(stack: Stack) -> None:
    sim = stack.sim("--error-rate", "1.0")  # every inference request fails: so will the warm-up
    await sim.proc.wait_http(sim.url + "/health")
    wrong_model = stack.agent(model="other/model", engine_url=sim.url, control_plane=None)
    agent = stack.agent(engine_url=sim.url, control_plane=None)

    async def reason(service) -> str | None:
        response = await stack.readyz(service)
        return None if response.status_code == 200 else response.json()["reason"]

    async def reason_is(service, expected: str) -> bool:
        return (await reason(service) or "").startswith(expected)

    await eventually(lambda: reason_is(
        wrong_model, "engine does not list model other/model (serves: org/model)"),
        what="model-not-listed reason")
    await eventually(lambda: reason_is(
        agent, "warm-up failed: POST /v1/completions answered 500"), what="warm-up reason")

    async with httpx.AsyncClient(trust_env=False) as http:
        (await http.put(sim.url + "/admin/faults", json={"error_rate": 0.0})).raise_for_status()
    expected = {"ready": True, "reason": "ready", "status": "ready", "model_id": "org/model",
                "engine": "vllm"}

    async def ready() -> bool:
        response = await stack.readyz(agent)
        return response.status_code == 200 and response.json() == expected

    await eventually(ready, what="ready once the engine answers")
    assert await reason(wrong_model) is not None  # still not its model

    sim.proc.kill()
    await eventually(lambda: reason_is(agent, "engine unhealthy: GET /health failed"),
                     what="engine-down reason")

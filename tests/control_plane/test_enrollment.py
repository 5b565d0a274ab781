"""The enrollment protocol: bootstrap tokens, their binding to one instance, revocation."""

from __future__ import annotations

from tests.control_plane.conftest import Running, bearer, beat, register_body


async def register(running: Running, instance_id: str = "i-1", token: str | None = None,
                   **fields: object):
    return await running.client.post("/v1/workers/register",
                                     json=register_body(instance_id, **fields),
                                     headers=bearer(token))


async def test_first_registration_issues_a_bootstrap_token_once(running: Running) -> None:
    first = await register(running)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["bootstrap_token"].startswith("wt-flt-")
    assert body["heartbeat_interval_s"] == 10.0
    assert first.headers["cache-control"] == "no-store"

    again = await register(running)
    assert again.status_code == 401
    assert again.json()["error"]["type"] == "authentication_error"
    assert "already has a worker token" in again.json()["error"]["message"]

    with_token = await register(running, token=body["bootstrap_token"])
    assert with_token.status_code == 200, with_token.text
    assert with_token.json()["bootstrap_token"] is None
    assert with_token.json()["worker_id"] == body["worker_id"]


async def test_a_token_of_another_instance_is_forbidden_and_an_unknown_one_unauthorized(
        running: Running) -> None:
    token_a = (await register(running, "i-a")).json()["bootstrap_token"]
    first_b = await register(running, "i-b", agent_url="http://127.0.0.1:9081")
    worker_b, token_b = first_b.json()["worker_id"], first_b.json()["bootstrap_token"]

    refused = await register(running, "i-b", token=token_a, agent_url="http://127.0.0.1:9081")
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"
    unknown = await register(running, "i-b", token="wt-flt-not-a-real-token",
                             agent_url="http://127.0.0.1:9081")
    assert unknown.status_code == 401

    client = running.client
    url = f"/v1/workers/{worker_b}/heartbeat"
    assert (await client.post(url, json=beat(), headers=bearer(token_a))).status_code == 403
    assert (await client.post(url, json=beat(), headers=bearer("wt-flt-x"))).status_code == 401
    assert (await client.post(url, json=beat())).status_code == 401
    assert (await client.post(url, json=beat(), headers=bearer(token_b))).status_code == 200


async def test_heartbeat_for_an_unknown_worker_is_404_so_the_agent_registers_again(
        running: Running) -> None:
    token = (await register(running)).json()["bootstrap_token"]
    reply = await running.client.post("/v1/workers/w_nobody/heartbeat", json=beat(),
                                      headers=bearer(token))
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "unknown_worker"


async def test_registration_presenting_a_token_the_control_plane_lost_gets_a_new_one(
        running: Running) -> None:
    # The instance has no token record (the store was lost with the control plane's memory):
    # the agent's old token is accepted like a first registration and replaced.
    reply = await register(running, "i-lost", token="wt-flt-token-from-a-previous-life")
    assert reply.status_code == 201, reply.text
    new_token = reply.json()["bootstrap_token"]
    assert new_token and new_token != "wt-flt-token-from-a-previous-life"
    assert (await register(running, "i-lost", token=new_token)).status_code == 200
    old = await register(running, "i-lost", token="wt-flt-token-from-a-previous-life")
    assert old.status_code == 401


async def test_revoked_token_is_refused_and_the_worker_leaves_the_fleet(
        running: Running) -> None:
    first = (await register(running, "i-r")).json()
    worker_id, token = first["worker_id"], first["bootstrap_token"]
    client = running.client
    assert (await client.post(f"/v1/workers/{worker_id}/heartbeat", json=beat(),
                              headers=bearer(token))).status_code == 200

    revoked = await client.delete("/v1/worker-tokens/i-r", headers=running.admin)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["workers_removed"] == [worker_id]
    assert await running.store.get_worker(worker_id) is None

    heartbeat = await client.post(f"/v1/workers/{worker_id}/heartbeat", json=beat(),
                                  headers=bearer(token))
    assert heartbeat.status_code == 401
    assert "revoked" in heartbeat.json()["error"]["message"]
    assert (await register(running, "i-r", token=token)).status_code == 401
    assert (await register(running, "i-r")).status_code == 401  # locked out, no new bootstrap

    readmitted = await client.post("/v1/worker-tokens/i-r/readmit", headers=running.admin)
    assert readmitted.status_code == 200
    fresh = await register(running, "i-r")
    assert fresh.status_code == 201
    assert fresh.json()["bootstrap_token"] not in (None, token)
    assert (await register(running, "i-r", token=token)).status_code == 401  # still revoked


async def test_deregister_removes_the_worker(running: Running) -> None:
    first = (await register(running)).json()
    worker_id, token = first["worker_id"], first["bootstrap_token"]
    reply = await running.client.post(f"/v1/workers/{worker_id}/deregister",
                                      json={"reason": "sigterm"}, headers=bearer(token))
    assert reply.status_code == 200, reply.text
    assert await running.store.get_worker(worker_id) is None
    kinds = [e.kind for e in await running.store.recent_events()]
    assert "worker.deregistered" in kinds
    again = await running.client.post(f"/v1/workers/{worker_id}/heartbeat", json=beat(),
                                      headers=bearer(token))
    assert again.status_code == 404


async def test_a_worker_id_owned_by_another_instance_conflicts(running: Running) -> None:
    assert (await register(running, "i-1", worker_id="w-fixed")).status_code == 201
    clash = await register(running, "i-2", worker_id="w-fixed",
                           agent_url="http://127.0.0.1:9081")
    assert clash.status_code == 409
    assert clash.json()["error"]["param"] == "worker_id"
    assert (await running.store.get_worker("w-fixed")).instance_id == "i-1"


async def test_worker_ids_with_slashes_are_addressable(running: Running) -> None:
    first = (await register(running, worker_id="pool/a/1")).json()
    assert first["worker_id"] == "pool/a/1"
    reply = await running.client.post("/v1/workers/pool%2Fa%2F1/heartbeat", json=beat(),
                                      headers=bearer(first["bootstrap_token"]))
    assert reply.status_code == 200, reply.text


async def test_an_agent_restarting_without_worker_id_keeps_its_id(running: Running) -> None:
    first = (await register(running)).json()
    again = (await register(running, token=first["bootstrap_token"])).json()
    assert again["worker_id"] == first["worker_id"]
    other = (await register(running, token=first["bootstrap_token"],
                            agent_url="http://127.0.0.1:9999")).json()
    assert other["worker_id"] != first["worker_id"]

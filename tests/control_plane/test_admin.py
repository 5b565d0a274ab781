"""The admin API: authentication, API keys, workers, events, and bad input that changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fleet import secrets
from fleet.store import KEYS
from tests.control_plane.conftest import ADMIN_TOKEN, Running, enroll, heartbeat

ADMIN_CALLS = [
    ("GET", "/v1/keys", None), ("POST", "/v1/keys", {"name": "x"}),
    ("DELETE", "/v1/keys/key_1", None), ("GET", "/v1/workers", None),
    ("GET", "/v1/workers/w1", None), ("POST", "/v1/workers/w1/drain", None),
    ("GET", "/v1/worker-tokens", None), ("DELETE", "/v1/worker-tokens/i-1", None),
    ("GET", "/v1/events", None),
]


@pytest.mark.parametrize("method,path,body", ADMIN_CALLS)
@pytest.mark.parametrize("headers", [
    {}, {"authorization": "Bearer wrong-token"}, {"authorization": f"Basic {ADMIN_TOKEN}"},
    {"authorization": f"Bearer {ADMIN_TOKEN}x"},
], ids=["missing", "wrong", "not-bearer", "longer"])
async def test_admin_calls_without_the_right_token_are_refused(
        running: Running, method: str, path: str, body: Any, headers: dict[str, str]) -> None:
    reply = await running.client.request(method, path, json=body, headers=headers)
    assert reply.status_code == 401
    assert reply.json()["error"]["type"] == "authentication_error"
    assert await running.store.get_docs(KEYS) == {}


async def test_without_admin_token_configured_the_admin_api_is_disabled(
        open_control_plane: Any) -> None:
    async with open_control_plane(admin_token=None) as running:
        reply = await running.client.get("/v1/keys", headers={"authorization": "Bearer x"})
        assert reply.status_code == 403
        assert "ADMIN_TOKEN" in reply.json()["error"]["message"]
        assert reply.json()["error"]["code"] == "admin_disabled"


async def test_keys_are_created_listed_and_deleted_with_the_raw_key_shown_once(
        running: Running) -> None:
    client, admin = running.client, running.admin
    created = await client.post("/v1/keys", json={"name": "team-a", "models": ["m1"],
                                                  "rpm": 60, "tpm": None}, headers=admin)
    assert created.status_code == 201, created.text
    key = created.json()
    assert key["key"].startswith("sk-flt-") and key["name"] == "team-a"
    assert (key["models"], key["rpm"], key["tpm"]) == (["m1"], 60, None)

    stored = await running.store.get_docs(KEYS)
    assert list(stored) == [secrets.sha256_hex(key["key"])]
    assert key["key"] not in str(stored)

    listed = (await client.get("/v1/keys", headers=admin)).json()["data"]
    assert [k["id"] for k in listed] == [key["id"]]
    assert "key" not in listed[0] and "key_hash" not in listed[0]
    assert listed[0]["prefix"] == key["key"][:11]

    deleted = await client.delete(f"/v1/keys/{key['id']}", headers=admin)
    assert deleted.json() == {"id": key["id"], "object": "api_key", "deleted": True}
    assert await running.store.get_docs(KEYS) == {}
    assert (await client.delete(f"/v1/keys/{key['id']}", headers=admin)).status_code == 404


async def test_key_changes_notify_routers(running: Running) -> None:
    async with running.store.subscribe() as subscription:
        iterator = subscription.__aiter__()
        await asyncio.sleep(0.05)
        await running.client.post("/v1/keys", json={"name": "n"}, headers=running.admin)
        assert await asyncio.wait_for(iterator.__anext__(), 5) == "keys"


async def test_workers_are_listed_with_their_state(running: Running) -> None:
    worker_id, token = await enroll(running)
    await heartbeat(running, worker_id, token, status="starting", queue_depth=4)
    listed = (await running.client.get("/v1/workers", headers=running.admin)).json()["data"]
    assert len(listed) == 1
    worker = listed[0]
    for field in ("worker_id", "instance_id", "model_id", "status", "ready", "url",
                  "queue_depth", "inflight", "last_heartbeat", "reason", "pool"):
        assert field in worker
    assert (worker["worker_id"], worker["status"], worker["ready"], worker["queue_depth"]) == (
        worker_id, "starting", False, 4)
    assert worker["reason"] == "agent reports starting"
    one = await running.client.get(f"/v1/workers/{worker_id}", headers=running.admin)
    assert one.json()["worker_id"] == worker_id
    missing = await running.client.get("/v1/workers/nope", headers=running.admin)
    assert missing.status_code == 404
    filtered = await running.client.get("/v1/workers?model_id=other", headers=running.admin)
    assert filtered.json()["data"] == []


async def test_events_are_listed_newest_first(running: Running) -> None:
    worker_id, _ = await enroll(running)
    await running.client.post("/v1/keys", json={"name": "k"}, headers=running.admin)
    reply = await running.client.get("/v1/events?limit=2", headers=running.admin)
    events = reply.json()["data"]
    assert [e["kind"] for e in events] == ["key.created", "worker.registered"]
    assert set(events[0]) >= {"time", "kind", "message", "severity", "subject", "data"}
    assert events[1]["subject"] == worker_id
    for bad in ("0", "x", "5000"):
        reply = await running.client.get(f"/v1/events?limit={bad}", headers=running.admin)
        assert reply.status_code == 400 and reply.json()["error"]["param"] == "limit"


async def test_worker_token_list_shows_no_hashes(running: Running) -> None:
    await enroll(running, "i-9")
    tokens = (await running.client.get("/v1/worker-tokens", headers=running.admin)).json()
    assert tokens["data"] == [{"instance_id": "i-9", "state": "active",
                               "issued_at": tokens["data"][0]["issued_at"], "revoked_at": None}]


async def test_unknown_endpoints_and_methods_are_openai_shaped(running: Running) -> None:
    missing = await running.client.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    wrong = await running.client.put("/v1/keys", headers=running.admin)
    assert wrong.status_code == 405 and "error" in wrong.json()

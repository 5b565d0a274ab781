"""Bad input gets a clear OpenAI-shaped 4xx and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from fleet.store import KEYS, WORKER_TOKENS
from tests.control_plane.conftest import Running, bearer, beat, enroll, register_body

OVERSIZED = {"instance_id": "i-1", "model_id": "m1", "url": "http://127.0.0.1:1",
             "agent_url": "http://127.0.0.1:2", "padding": "x" * 70_000}

REGISTER_CASES = [
    ("malformed", b"{not json", 400, None),
    ("not-an-object", b"[1, 2]", 400, None),
    ("empty", b"", 400, None),
    ("missing-field", {"instance_id": "i-1"}, 400, "model_id"),
    ("wrong-type", {**register_body(), "tensor_parallel_size": "two"}, 400,
     "tensor_parallel_size"),
    ("bad-url", {**register_body(), "url": "ftp://127.0.0.1/x"}, 400, "url"),
    ("url-with-credentials", {**register_body(), "url": "http://u:p@127.0.0.1"}, 400, "url"),
    ("bad-id", {**register_body(), "instance_id": "../../etc"}, 400, "instance_id"),
    ("oversized", OVERSIZED, 413, None),
]


async def _post(running: Running, path: str, body: Any, headers: dict[str, str] | None = None
                ) -> Any:
    if isinstance(body, bytes):
        return await running.client.post(path, content=body, headers={
            "content-type": "application/json", **(headers or {})})
    return await running.client.post(path, json=body, headers=headers)


@pytest.mark.parametrize("name,body,status,param", REGISTER_CASES,
                         ids=[c[0] for c in REGISTER_CASES])
async def test_bad_registrations_are_refused_and_change_nothing(
        running: Running, name: str, body: Any, status: int, param: str | None) -> None:
    reply = await _post(running, "/v1/workers/register", body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error"
    if param:
        assert error["param"] == param
    assert await running.store.list_workers() == []
    assert await running.store.get_docs(WORKER_TOKENS) == {}


async def test_unknown_fields_from_newer_agents_are_accepted(running: Running) -> None:
    body = {**register_body(), "from_the_future": {"nested": True}}
    assert (await _post(running, "/v1/workers/register", body)).status_code == 201


HEARTBEAT_CASES = [
    ("malformed", b"{", 400, None),
    ("bad-status", beat("sleeping"), 400, "status"),
    ("negative-depth", beat(queue_depth=-1), 400, "queue_depth"),
    ("wrong-type", beat(inflight="3"), 400, "inflight"),
    ("fraction-over-one", beat(gpu_util=1.5), 400, "gpu_util"),
    ("other-model", beat(model_id="m2"), 409, "model_id"),
    ("oversized", {**beat(), "padding": "x" * 70_000}, 413, None),
]


@pytest.mark.parametrize("name,body,status,param", HEARTBEAT_CASES,
                         ids=[c[0] for c in HEARTBEAT_CASES])
async def test_bad_heartbeats_are_refused_and_change_nothing(
        running: Running, name: str, body: Any, status: int, param: str | None) -> None:
    worker_id, token = await enroll(running)
    before = await running.store.get_worker(worker_id)
    reply = await _post(running, f"/v1/workers/{worker_id}/heartbeat", body, bearer(token))
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["message"]
    if param:
        assert reply.json()["error"]["param"] == param
    assert await running.store.get_worker(worker_id) == before


KEY_CASES = [
    ("malformed", b"{'name': 1}", 400, None),
    ("missing-name", {}, 400, "name"),
    ("empty-name", {"name": ""}, 400, "name"),
    ("wrong-type", {"name": "a", "rpm": "sixty"}, 400, "rpm"),
    ("zero-rpm", {"name": "a", "rpm": 0}, 400, "rpm"),
    ("models-not-list", {"name": "a", "models": "m1"}, 400, "models"),
    ("unknown-field", {"name": "a", "rmp": 60}, 400, "rmp"),
    ("oversized", {"name": "a", "models": ["m" * 1000] * 70}, 413, None),
]


@pytest.mark.parametrize("name,body,status,param", KEY_CASES, ids=[c[0] for c in KEY_CASES])
async def test_bad_key_requests_are_refused_and_change_nothing(
        running: Running, name: str, body: Any, status: int, param: str | None) -> None:
    reply = await _post(running, "/v1/keys", body, running.admin)
    assert reply.status_code == status, reply.text
    if param:
        assert reply.json()["error"]["param"] == param
    assert await running.store.get_docs(KEYS) == {}


async def test_a_drain_request_with_unknown_fields_changes_nothing(running: Running) -> None:
    worker_id, _ = await enroll(running)
    reply = await running.client.post(f"/v1/workers/{worker_id}/drain",
                                      json={"reson": "typo"}, headers=running.admin)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "reson"
    assert (await running.store.get_worker(worker_id)).drain_requested_at is None


async def test_a_body_larger_than_declared_is_cut_off(running: Running) -> None:
    async def chunks() -> Any:
        for _ in range(100):
            yield b"x" * 1024

    reply = await running.client.post("/v1/workers/register", content=chunks())
    assert reply.status_code == 413

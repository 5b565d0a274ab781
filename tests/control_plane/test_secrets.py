"""Worker tokens and API keys exist in clear only in the one reply that hands them out."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis.asyncio as aioredis

from fleet import secrets
from fleet.store import WORKER_TOKENS
from tests.control_plane.conftest import Running, bearer, enroll, heartbeat, register_body


async def all_redis_bytes(url: str) -> bytes:
    client = aioredis.Redis.from_url(url)
    try:
        chunks = []
        async for key in client.scan_iter(count=1000):
            chunks.append(key)
            kind = (await client.type(key)).decode()
            if kind == "string":
                chunks.append(await client.get(key) or b"")
            elif kind == "hash":
                for field, value in (await client.hgetall(key)).items():
                    chunks += [field, value]
            elif kind == "list":
                chunks += await client.lrange(key, 0, -1)
            elif kind == "set":
                chunks += list(await client.smembers(key))
        return b"\n".join(chunks)
    finally:
        await client.aclose()


async def test_tokens_and_keys_are_stored_only_as_hashes_and_never_logged(
        running: Running, store_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    worker_id, token = await enroll(running, "i-secret")
    await heartbeat(running, worker_id, token)
    again = await running.client.post("/v1/workers/register", json=register_body("i-secret"),
                                      headers=bearer(token))
    assert again.status_code == 200
    key = (await running.client.post("/v1/keys", json={"name": "k"},
                                     headers=running.admin)).json()["key"]
    lost = await running.client.post(
        "/v1/workers/register", json=register_body("i-other", agent_url="http://127.0.0.1:7"),
        headers=bearer("wt-flt-an-old-token-the-store-lost"))
    new_token = lost.json()["bootstrap_token"]

    dump = await all_redis_bytes(store_url)
    for secret in (token, key, new_token, "wt-flt-an-old-token-the-store-lost"):
        assert secret.encode() not in dump
        assert secret not in caplog.text
    doc = await running.store.get_doc(WORKER_TOKENS, "i-secret")
    assert doc is not None and doc["token_hash"] == secrets.sha256_hex(token)
    assert secrets.sha256_hex(key).encode() in dump
    for record in caplog.records:
        assert token not in str(getattr(record, "__dict__", {}))


async def test_revoked_token_hashes_stay_hashes(running: Running, store_url: str) -> None:
    _, token = await enroll(running, "i-rev")
    await running.client.delete("/v1/worker-tokens/i-rev", headers=running.admin)
    dump = await all_redis_bytes(store_url)
    assert token.encode() not in dump
    assert secrets.sha256_hex(token).encode() in dump


@pytest.mark.parametrize("field", ["admin_token", "redis_url"])
def test_settings_never_show_secrets(field: str) -> None:
    from control_plane.settings import ControlPlaneSettings
    from fleet.settings import describe

    value: Any = "redis://:hunter2-password@127.0.0.1/0" if field == "redis_url" else \
        "hunter2-password-0123456789"
    settings = ControlPlaneSettings(**{field: value})
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(describe(settings))

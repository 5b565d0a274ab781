"""The IMDSv2 client and Spot watcher, against a faithful fake metadata server over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.fake_imds import FakeImds
from tests.support.http_server import serve_http
from worker_agent.backoff import Backoff
from worker_agent.errors import ImdsError
from worker_agent.imds import (
    INSTANCE_ACTION_PATH,
    ImdsClient,
    SpotWatcher,
    fetch_instance_id,
    parse_time,
)


@pytest.fixture
async def imds() -> AsyncIterator[tuple[FakeImds, str, httpx.AsyncClient]]:
    fake = FakeImds()
    async with serve_http(fake.app) as url, httpx.AsyncClient(trust_env=False) as http:
        yield fake, url, http


async def test_fake_refuses_calls_without_a_session_token(imds) -> None:
    fake, url, http = imds
    assert (await http.get(url + INSTANCE_ACTION_PATH)).status_code == 401
    assert (await http.put(url + "/latest/api/token")).status_code == 400
    proxied = await http.put(url + "/latest/api/token", headers={
        "X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "10.0.0.1"})
    assert proxied.status_code == 403


async def test_no_notice_is_a_404_and_a_notice_is_read_with_its_deadline(imds) -> None:
    fake, url, http = imds
    client = ImdsClient(url, http, token_ttl_s=60)
    assert await client.get(INSTANCE_ACTION_PATH) is None
    at = time.time() + 120
    fake.interrupt(at)
    notices: list[tuple[str, float | None]] = []
    watcher = SpotWatcher(client, on_notice=lambda k, d: notices.append((k, d)), interval_s=0.05,
                          backoff=Backoff(0.05, 0.1))
    await watcher.check_once()
    assert notices[0][0] == "spot_interruption"
    assert notices[0][1] == pytest.approx(at, abs=1.0)
    assert fake.requests["token"] == 1  # one session token serves every call


async def test_a_rebalance_recommendation_is_reported_without_deadline(imds) -> None:
    fake, url, http = imds
    notices: list[tuple[str, float | None]] = []
    seen: list[str] = []
    watcher = SpotWatcher(ImdsClient(url, http), on_notice=lambda k, d: notices.append((k, d)),
                          interval_s=0.05, backoff=Backoff(0.05, 0.1), on_seen=seen.append)
    await watcher.check_once()
    assert notices == []
    fake.recommend_rebalance()
    await watcher.check_once()
    await watcher.check_once()
    assert notices == [("rebalance", None), ("rebalance", None)]
    assert seen == ["rebalance"]  # logged and counted once


async def test_an_expired_token_is_replaced_on_401(imds) -> None:
    fake, url, http = imds
    client = ImdsClient(url, http, token_ttl_s=3600)
    assert await client.get(INSTANCE_ACTION_PATH) is None
    fake.expire_tokens()
    assert await client.get(INSTANCE_ACTION_PATH) is None
    assert fake.requests["unauthorized"] == 1
    assert fake.requests["token"] == 2


async def test_the_token_is_renewed_before_its_ttl_runs_out(imds) -> None:
    fake, url, http = imds
    now = [1000.0]
    client = ImdsClient(url, http, token_ttl_s=8, clock=lambda: now[0])
    await client.get(INSTANCE_ACTION_PATH)
    now[0] += 5.0  # 3 s left: still outside the margin, the token is reused
    await client.get(INSTANCE_ACTION_PATH)
    assert fake.requests["token"] == 1
    now[0] += 1.5  # 1.5 s left: inside the 25% (2 s) renewal margin of an 8 s token
    await client.get(INSTANCE_ACTION_PATH)
    assert fake.requests["token"] == 2
    assert fake.requests["unauthorized"] == 0


async def test_a_slow_metadata_service_times_out_and_the_watcher_carries_on(imds) -> None:
    fake, url, http = imds
    fake.delay_s = 0.5
    client = ImdsClient(url, http, timeout_s=0.1)
    with pytest.raises(ImdsError, match="timed out"):
        await client.get(INSTANCE_ACTION_PATH)
    notices: list[tuple[str, float | None]] = []
    watcher = SpotWatcher(client, on_notice=lambda k, d: notices.append((k, d)),
                          interval_s=0.02, backoff=Backoff(0.02, 0.05))
    task = asyncio.create_task(watcher.run())
    await asyncio.sleep(0.3)
    fake.delay_s = 0.0
    fake.interrupt(time.time() + 60)
    for _ in range(200):
        if notices:
            break
        await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert notices and notices[0][0] == "spot_interruption"


async def test_an_unreadable_notice_still_drains_without_a_deadline(imds) -> None:
    fake, url, http = imds
    fake.instance_action = {"action": "terminate", "time": "soon"}
    notices: list[tuple[str, float | None]] = []
    watcher = SpotWatcher(ImdsClient(url, http), on_notice=lambda k, d: notices.append((k, d)),
                          interval_s=0.05, backoff=Backoff(0.05, 0.1))
    await watcher.check_once()
    assert notices == [("spot_interruption", None)]


async def test_the_instance_id_comes_from_imds(imds) -> None:
    fake, url, http = imds
    assert await fetch_instance_id(url, http) == fake.instance_id


async def test_an_unreachable_metadata_service_is_an_imds_error() -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        from tests.support.ports import free_port

        with pytest.raises(ImdsError):
            await ImdsClient(f"http://127.0.0.1:{free_port()}", http).get(INSTANCE_ACTION_PATH)


def test_notice_times_are_utc_iso8601() -> None:
    assert parse_time("2026-01-01T00:00:00Z") == 1767225600.0
    with pytest.raises(ValueError):
        parse_time("2026-01-01T00:00:00")

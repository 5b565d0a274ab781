"""How the agent reads control plane answers it cannot use: a misbehaving server over HTTP.

The real control plane never answers garbage, so this one small server of the test's own does:
5xx, 4xx in OpenAI shape, non-JSON, JSON of the wrong shape, and an answer that never comes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from fleet.schemas import Heartbeat, RegisterRequest
from tests.support.http_server import serve_http
from worker_agent.control_plane_client import ControlPlaneClient
from worker_agent.errors import ControlPlaneRejected, ControlPlaneUnreachable

TOKEN = "wt-flt-secret-value"
REQUEST = RegisterRequest(instance_id="i-1", model_id="m", url="http://127.0.0.1:8000",
                          agent_url="http://127.0.0.1:8080")

seen: list[dict[str, str]] = []  # request headers, in order


async def misbehave(request: Request) -> Response:
    seen.append(dict(request.headers))
    mode = request.path_params["mode"]
    if mode == "down":
        return PlainTextResponse("upstream exploded", status_code=502)
    if mode == "refuse":
        return JSONResponse({"error": {"message": "this worker token belongs to another "
                                       "instance", "type": "permission_error", "param": None,
                                       "code": None}}, status_code=403)
    if mode == "flat":
        return JSONResponse({"error": "unknown worker"}, status_code=404)
    if mode == "html":
        return PlainTextResponse("<html>maintenance</html>")
    if mode == "shape":
        return JSONResponse({"worker": "w-1"})
    if mode == "slow":
        await asyncio.sleep(2)
    return JSONResponse({"worker_id": "w-1", "heartbeat_interval_s": 5.0})


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = Starlette(routes=[Route("/{mode}/v1/workers/{rest:path}", misbehave,
                                  methods=["POST"])])
    async with serve_http(app) as url:
        yield url


async def register(base: str, mode: str, timeout_s: float = 2.0):
    async with httpx.AsyncClient(trust_env=False) as http:
        client = ControlPlaneClient(f"{base}/{mode}", http, timeout_s=timeout_s)
        return await client.register(REQUEST, TOKEN)


async def test_a_good_answer_is_parsed_and_the_token_sent_as_bearer(server: str) -> None:
    reply = await register(server, "ok")
    assert (reply.worker_id, reply.heartbeat_interval_s, reply.bootstrap_token) == (
        "w-1", 5.0, None)
    assert seen[-1]["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("mode, fragment", [
    ("down", "answered 502"), ("html", "unreadable reply"), ("shape", "unreadable reply"),
])
async def test_answers_that_cannot_be_used_are_worth_retrying(server: str, mode: str,
                                                              fragment: str) -> None:
    with pytest.raises(ControlPlaneUnreachable, match=fragment) as caught:
        await register(server, mode)
    assert TOKEN not in str(caught.value)


async def test_refusals_carry_status_and_message(server: str) -> None:
    with pytest.raises(ControlPlaneRejected) as caught:
        await register(server, "refuse")
    assert caught.value.status == 403 and "another instance" in caught.value.message
    async with httpx.AsyncClient(trust_env=False) as http:
        client = ControlPlaneClient(f"{server}/flat", http, timeout_s=2)
        with pytest.raises(ControlPlaneRejected) as flat:
            await client.heartbeat("w/1", Heartbeat(status="ready", model_id="m"), TOKEN)
    assert flat.value.status == 404 and flat.value.message == "unknown worker"


async def test_a_control_plane_that_does_not_answer_times_out(server: str) -> None:
    with pytest.raises(ControlPlaneUnreachable, match="timed out"):
        await register(server, "slow", timeout_s=0.2)

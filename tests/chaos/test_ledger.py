"""The chaos ledger tells every outcome apart, so the scenarios' "zero silent loss" can fail.

A small fake OpenAI server (served over real HTTP) answers in one chosen way; the official SDK,
driven by `ChaosLoad`, must land each request in the right bucket. Fast: not a chaos scenario.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.chaos.load import ChaosLoad
from tests.support.http_server import serve_http


def _chunk(stream_id: str, delta: dict, finish: str | None = None) -> bytes:
    body = {"id": stream_id, "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(body) + b"\n\n"


STREAMS = {
    "ok": [_chunk("a", {"role": "assistant", "content": ""}), _chunk("a", {"content": "hi"}),
           _chunk("a", {}, "stop"), b"data: [DONE]\n\n"],
    "silent": [_chunk("a", {"role": "assistant", "content": ""}), _chunk("a", {"content": "hi"}),
               b"data: [DONE]\n\n"],
    "error_event": [_chunk("a", {"role": "assistant", "content": ""}),
                    b'data: {"error": {"message": "The response stream was interrupted", '
                    b'"type": "server_error", "param": null, "code": "stream_interrupted"}}\n\n'],
    "garbled": [_chunk("a", {"role": "assistant", "content": ""}), _chunk("a", {"content": "h"}),
                _chunk("b", {"role": "assistant", "content": ""}), _chunk("b", {}, "stop"),
                b"data: [DONE]\n\n"],
}


def fake_openai(mode: str) -> Starlette:
    async def chat(request: Request) -> Response:
        body = await request.json()
        if mode == "hang":
            await asyncio.sleep(1.5)  # past the ledger's 0.5 s bound (short: the server's
            # shutdown waits for it)
        if mode == "status":
            return JSONResponse({"error": {"message": "no", "type": "server_error", "param": None,
                                           "code": "upstream_unreachable"}}, status_code=502)
        if body.get("stream"):
            async def events():
                for event in STREAMS[mode]:
                    yield event
            return StreamingResponse(events(), media_type="text/event-stream")
        finish = None if mode == "silent" else "stop"
        return JSONResponse({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
                             "choices": [{"index": 0, "finish_reason": finish, "message":
                                          {"role": "assistant", "content": "hi"}}]})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


async def _run(mode: str, *, stream_fraction: float = 1.0) -> ChaosLoad:
    async with serve_http(fake_openai(mode)) as url:
        load = ChaosLoad([url], "key", concurrency=2, stream_fraction=stream_fraction,
                         hang_bound_s=0.5)
        await load.run(0.3)
    return load


@pytest.mark.parametrize(("mode", "stream_fraction", "bucket"), [
    ("ok", 0.5, "ok"),
    ("error_event", 1.0, "stream_errors"),
    ("status", 0.5, "failed"),
])
async def test_visible_outcomes_pass_the_no_silent_loss_check(mode: str, stream_fraction: float,
                                                              bucket: str) -> None:
    load = await _run(mode, stream_fraction=stream_fraction)
    figures = load.summary()
    assert figures["sent"] > 0 and figures[bucket] == figures["sent"], figures
    load.assert_no_silent_loss()
    if mode == "error_event":
        assert figures["stream_errors_by_reason"] == {"stream_interrupted": figures["sent"]}
    if mode == "status":
        assert figures["failed_by_reason"] == {"502 upstream_unreachable": figures["sent"]}


@pytest.mark.parametrize(("mode", "stream_fraction", "bucket"), [
    ("silent", 1.0, "silent"),  # a stream that ends without finish_reason or error event
    ("silent", 0.0, "silent"),  # an answer without finish_reason
    ("garbled", 1.0, "garbled"),  # two answers spliced
    ("hang", 0.5, "hangs"),  # no end within the bound
])
async def test_silent_losses_fail_the_check(mode: str, stream_fraction: float,
                                            bucket: str) -> None:
    load = await _run(mode, stream_fraction=stream_fraction)
    figures = load.summary()
    assert figures["sent"] > 0 and figures[bucket] == figures["sent"], figures
    with pytest.raises(AssertionError):
        load.assert_no_silent_loss()

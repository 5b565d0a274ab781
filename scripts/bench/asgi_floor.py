"""The floor for `simulator_throughput.py`: a bare ASGI app on uvicorn sending the same bytes.

No parsing beyond finding `"stream":true`, no model, no metrics: the least any Python ASGI server
can do per request. Comparing the simulator with it in the same run shows what the simulator's own
logic and HTTP layer cost. Run it with `uvicorn asgi_floor:app --http httptools --loop uvloop`;
`FLOOR_TOKENS` and `FLOOR_WHOLE_TOKENS` set the tokens per streamed and whole answer.
"""

from __future__ import annotations

import os

import orjson

TOKENS = int(os.environ.get("FLOOR_TOKENS", "64"))
WHOLE_TOKENS = int(os.environ.get("FLOOR_WHOLE_TOKENS", "16"))
_HEAD = b'data: {"id":"chatcmpl-0","object":"chat.completion.chunk","created":0,"model":"sim-model"'
_ROLE = _HEAD + (b',"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
                 b'"logprobs":null,"finish_reason":null}]}\n\n')
_TOKEN = _HEAD + (b',"choices":[{"index":0,"delta":{"content":"word "},"logprobs":null,'
                  b'"finish_reason":null}]}\n\n')
_USAGE = _HEAD + b',"choices":[],"usage":%b}\n\n' % orjson.dumps(
    {"prompt_tokens": 5, "total_tokens": 5 + TOKENS, "completion_tokens": TOKENS})


def _whole(tokens: int) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-0", "object": "chat.completion", "created": 0, "model": "sim-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "word " * tokens},
                     "finish_reason": "length"}],
        "usage": {"prompt_tokens": 5, "total_tokens": 5 + tokens, "completion_tokens": tokens},
    })


async def app(scope, receive, send):  # noqa: ANN001, ANN201 - the ASGI signature
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if b'"stream":true' in body:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": _ROLE, "more_body": True})
        for _ in range(TOKENS):
            await send({"type": "http.response.body", "body": _TOKEN, "more_body": True})
        await send({"type": "http.response.body", "body": _USAGE, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
        return
    payload = _whole(WHOLE_TOKENS)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})

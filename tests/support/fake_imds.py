"""A faithful fake of the EC2 instance metadata service, IMDSv2 only, for the agent's tests.

What it does as the real one does:
- `PUT /latest/api/token` needs `X-aws-ec2-metadata-token-ttl-seconds` (1..21600, else 400) and
  is refused (403) when it carries `X-Forwarded-For` (IMDS refuses proxied token requests);
  it returns an opaque token valid for that many seconds.
- every `GET /latest/...` needs a valid `X-aws-ec2-metadata-token`: missing, unknown or expired
  -> 401 (IMDSv1-style calls are refused when the instance requires IMDSv2).
- `spot/instance-action` and `events/recommendations/rebalance` answer 404 until a notice exists,
  then JSON (`{"action": "terminate", "time": "...Z"}`, `{"noticeTime": "...Z"}`).
- `instance-id` answers the instance id as text.
Test controls (Python, not HTTP): `interrupt(at)`, `recommend_rebalance(at)`, `expire_tokens()`,
`delay_s` (slow answers, for timeouts), and counters of what was asked.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "x-aws-ec2-metadata-token"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeImds:
    def __init__(self, instance_id: str = "i-0123456789abcdef0") -> None:
        self.instance_id = instance_id
        self.tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.instance_action: dict[str, str] | None = None
        self.rebalance: dict[str, str] | None = None
        self.delay_s = 0.0
        self.requests: Counter[str] = Counter()
        self.app = Starlette(routes=[
            Route("/latest/api/token", self._token, methods=["PUT"]),
            Route("/latest/{path:path}", self._get, methods=["GET"]),
        ])

    # -- controls -----------------------------------------------------------------------------

    def interrupt(self, at: float, action: str = "terminate") -> None:
        self.instance_action = {"action": action, "time": iso(at)}

    def recommend_rebalance(self, at: float | None = None) -> None:
        self.rebalance = {"noticeTime": iso(time.time() if at is None else at)}

    def expire_tokens(self) -> None:
        self.tokens = {token: 0.0 for token in self.tokens}

    # -- the service --------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        self.requests["token"] += 1
        await self._slow()
        if "x-forwarded-for" in request.headers:
            return PlainTextResponse("Forbidden", status_code=403)
        raw = request.headers.get(TTL_HEADER)
        try:
            ttl = int(raw) if raw is not None else 0
        except ValueError:
            ttl = 0
        if not 1 <= ttl <= 21600:
            return PlainTextResponse("Bad Request", status_code=400)
        token = secrets.token_urlsafe(32)
        self.tokens[token] = time.monotonic() + ttl
        return PlainTextResponse(token, headers={TTL_HEADER: str(ttl)})

    async def _get(self, request: Request) -> Response:
        path = request.path_params["path"]
        self.requests[path] += 1
        await self._slow()
        token = request.headers.get(TOKEN_HEADER)
        if token is None or self.tokens.get(token, 0.0) <= time.monotonic():
            self.requests["unauthorized"] += 1
            return PlainTextResponse("Unauthorized", status_code=401)
        if path == "meta-data/instance-id":
            return PlainTextResponse(self.instance_id)
        if path == "meta-data/spot/instance-action" and self.instance_action:
            return JSONResponse(self.instance_action)
        if path == "meta-data/events/recommendations/rebalance" and self.rebalance:
            return JSONResponse(self.rebalance)
        return PlainTextResponse("Not Found", status_code=404)

    async def _slow(self) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)


class FakeImdsFleet:
    """One fake metadata service per instance behind one port: `/<instance_id>/latest/...`.

    The local provider gives each instance `IMDS_URL=http://host:port/<instance_id>` (its
    `imds_url` template `http://host:port/{instance_id}`), so a test interrupts one instance.
    """

    def __init__(self) -> None:
        self.instances: dict[str, FakeImds] = {}

    def of(self, instance_id: str) -> FakeImds:
        imds = self.instances.get(instance_id)
        if imds is None:
            imds = self.instances[instance_id] = FakeImds(instance_id)
        return imds

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            return
        _, instance_id, rest = scope["path"].split("/", 2) if scope["path"].count("/") >= 2 \
            else ("", "", "")
        inner = dict(scope, path="/" + rest, raw_path=("/" + rest).encode())
        await self.of(instance_id).app(inner, receive, send)  # type: ignore[arg-type]

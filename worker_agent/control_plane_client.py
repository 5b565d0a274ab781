"""HTTP calls to the control plane's worker API, mapped to the agent's errors.

    POST {CONTROL_PLANE_URL}/v1/workers/register              RegisterRequest -> RegisterResponse
    POST {CONTROL_PLANE_URL}/v1/workers/{id}/heartbeat        Heartbeat       -> HeartbeatResponse
    POST {CONTROL_PLANE_URL}/v1/workers/{id}/deregister       Deregister

Every call has a timeout. Connection errors, timeouts, 5xx and unreadable replies become
`ControlPlaneUnreachable` (retry later); a 4xx becomes `ControlPlaneRejected` with the status and
the control plane's message. The token goes only into the Authorization header, never into an
error or a log line.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import orjson

from fleet.schemas import (
    Deregister,
    Heartbeat,
    HeartbeatResponse,
    RegisterRequest,
    RegisterResponse,
)
from fleet.validation import ValidationError, parse
from worker_agent.errors import ControlPlaneRejected, ControlPlaneUnreachable

T = TypeVar("T")


def _message(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"][:300]
        if isinstance(error, str):
            return error[:300]
    return response.text[:200]


def _body(value: Any) -> bytes:
    # Omit unset optional fields: older control planes then see only what they know.
    data = {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
    return orjson.dumps(data)


class ControlPlaneClient:
    def __init__(self, base_url: str, http: httpx.AsyncClient, *, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.timeout_s = timeout_s

    async def register(self, request: RegisterRequest, token: str | None) -> RegisterResponse:
        return await self._call("/v1/workers/register", request, token, RegisterResponse)

    async def heartbeat(self, worker_id: str, beat: Heartbeat, token: str | None
                        ) -> HeartbeatResponse:
        path = f"/v1/workers/{quote(worker_id, safe='')}/heartbeat"
        return await self._call(path, beat, token, HeartbeatResponse)

    async def deregister(self, worker_id: str, reason: str | None, token: str | None) -> None:
        path = f"/v1/workers/{quote(worker_id, safe='')}/deregister"
        await self._call(path, Deregister(reason=reason), token, None)

    async def _call(self, path: str, payload: Any, token: str | None,
                    reply: type[T] | None) -> T:
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        try:
            response = await self.http.post(self.base_url + path, content=_body(payload),
                                            headers=headers, timeout=self.timeout_s)
        except httpx.TimeoutException:
            raise ControlPlaneUnreachable(f"POST {path} timed out") from None
        except httpx.HTTPError as exc:
            raise ControlPlaneUnreachable(f"POST {path} failed: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise ControlPlaneUnreachable(f"POST {path} answered {response.status_code}: "
                                          f"{_message(response)}")
        if response.status_code >= 400:
            raise ControlPlaneRejected(response.status_code, _message(response))
        if reply is None:
            return None  # type: ignore[return-value]
        try:
            return parse(reply, orjson.loads(response.content), allow_unknown=True)
        except (orjson.JSONDecodeError, ValidationError) as exc:
            raise ControlPlaneUnreachable(f"POST {path}: unreadable reply ({exc})") from None

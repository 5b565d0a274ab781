"""The EC2 instance metadata service (IMDSv2) and the Spot interruption watcher.

IMDSv2 is session-based: `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds`
returns a token, sent as `X-aws-ec2-metadata-token` on every GET. The client refreshes the token
before its TTL runs out, and once more when a GET answers 401 (expired or unknown token).

The watcher polls two documents (AWS suggests every 5 s):
    /latest/meta-data/spot/instance-action                 404 = no notice;
        {"action": "terminate"|"stop"|"hibernate", "time": "2026-01-01T12:00:00Z"}
        -> drain "spot_interruption" with that deadline (the machine goes ~2 minutes later)
    /latest/meta-data/events/recommendations/rebalance     404 = none; {"noticeTime": "..."}
        -> drain "rebalance" without a deadline (see docs/worker-agent.md for why we drain)
Timeouts and other failures are logged once per streak and retried with backoff: an agent that
is not on EC2, or whose metadata service hiccups, keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime

import httpx
import orjson

from worker_agent.backoff import Backoff
from worker_agent.errors import ImdsError

log = logging.getLogger(__name__)

TOKEN_PATH = "/latest/api/token"
INSTANCE_ACTION_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"
INSTANCE_ID_PATH = "/latest/meta-data/instance-id"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"


def parse_time(text: str) -> float:
    """ISO 8601 (`2026-01-01T12:00:00Z`) to Unix seconds."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        raise ValueError(f"time without a zone: {text!r}")
    return moment.timestamp()


class ImdsClient:
    def __init__(self, base_url: str, http: httpx.AsyncClient, *, token_ttl_s: int = 21600,
                 timeout_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.token_ttl_s = token_ttl_s
        self.timeout_s = timeout_s
        self.clock = clock
        self._token: str | None = None
        self._token_expires_at = 0.0

    def _refresh_margin(self) -> float:
        # Renew well before expiry: a minute for the usual 6-hour tokens, a quarter for short ones.
        return min(60.0, self.token_ttl_s * 0.25)

    async def _fresh_token(self) -> str:
        if self._token is not None and self.clock() < self._token_expires_at - \
                self._refresh_margin():
            return self._token
        requested_at = self.clock()
        response = await self._send("PUT", TOKEN_PATH, {TTL_HEADER: str(self.token_ttl_s)})
        if response.status_code != 200 or not response.text.strip():
            raise ImdsError(f"token request answered {response.status_code}")
        self._token = response.text.strip()
        self._token_expires_at = requested_at + self.token_ttl_s
        return self._token

    async def _send(self, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
        try:
            return await self.http.request(method, self.base_url + path, headers=headers,
                                           timeout=self.timeout_s)
        except httpx.TimeoutException:
            raise ImdsError(f"{method} {path} timed out") from None
        except httpx.HTTPError as exc:
            raise ImdsError(f"{method} {path} failed: {type(exc).__name__}") from None

    async def get(self, path: str) -> str | None:
        """The document at `path`, or None when IMDS answers 404 (it does not exist now)."""
        for attempt in (1, 2):
            token = await self._fresh_token()
            response = await self._send("GET", path, {TOKEN_HEADER: token})
            if response.status_code == 401 and attempt == 1:
                self._token = None  # expired or revoked: get a new one and try once more
                continue
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise ImdsError(f"GET {path} answered {response.status_code}")
            return response.text
        raise ImdsError(f"GET {path} answered 401 with a fresh token")


class SpotWatcher:
    def __init__(self, imds: ImdsClient, *, on_notice: Callable[[str, float | None], None],
                 interval_s: float, backoff: Backoff,
                 on_seen: Callable[[str], None] | None = None) -> None:
        self.imds = imds
        self.on_notice = on_notice
        self.on_seen = on_seen
        self.interval_s = interval_s
        self.backoff = backoff
        self._failing = False
        self._seen: set[str] = set()

    async def run(self) -> None:
        while True:
            try:
                await self.check_once()
            except ImdsError as exc:
                if not self._failing:
                    log.warning("instance metadata service unavailable (%s); Spot notices "
                                "cannot be seen until it answers, retrying", exc)
                self._failing = True
                await asyncio.sleep(max(self.interval_s, self.backoff.next_delay()))
                continue
            if self._failing:
                log.info("instance metadata service answers again")
                self._failing = False
            self.backoff.reset()
            await asyncio.sleep(self.interval_s)

    async def check_once(self) -> None:
        action = await self.imds.get(INSTANCE_ACTION_PATH)
        if action is not None:
            deadline = self._deadline(action)
            self._note("spot_interruption", f"Spot interruption notice: {action.strip()}")
            self.on_notice("spot_interruption", deadline)
            return
        rebalance = await self.imds.get(REBALANCE_PATH)
        if rebalance is not None:
            self._note("rebalance", f"Spot rebalance recommendation: {rebalance.strip()}")
            self.on_notice("rebalance", None)

    def _note(self, kind: str, message: str) -> None:
        if kind not in self._seen:
            self._seen.add(kind)
            log.warning("%s", message[:300])
            if self.on_seen is not None:
                self.on_seen(kind)

    @staticmethod
    def _deadline(document: str) -> float | None:
        try:
            data = orjson.loads(document)
            return parse_time(str(data["time"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            # A notice we cannot read is still a notice: drain, bounded by DRAIN_TIMEOUT_S.
            log.warning("unreadable Spot instance-action %r (%s)", document[:200], exc)
            return None


async def fetch_instance_id(base_url: str, http: httpx.AsyncClient, *,
                            timeout_s: float = 2.0) -> str:
    """This instance's id from IMDS (used when INSTANCE_ID is not set)."""
    document = await ImdsClient(base_url, http, timeout_s=timeout_s,
                                token_ttl_s=60).get(INSTANCE_ID_PATH)
    if not document or not document.strip():
        raise ImdsError("IMDS has no instance-id")
    return document.strip()

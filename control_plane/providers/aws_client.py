"""aioboto3 clients for the AWS provider: timeouts, retries, and errors mapped to ours.

Two EC2 clients share one session:

- `ec2` for reads and terminations: botocore's standard retry mode (3 attempts, backoff, jitter).
- `ec2_launch` for RunInstances with botocore retries *off*. EC2 answers
  InsufficientInstanceCapacity with HTTP 500, which botocore would retry against the same type and
  zone before telling us; the launcher wants that answer at once to move to the next capacity
  pool. Transient failures of a launch are retried by the launcher itself with the same
  ClientToken, so EC2 deduplicates them instead of starting a second machine.

Every call runs under `asyncio.timeout(api_timeout_s)` on top of botocore's connect/read timeouts.
Credentials, region and endpoint come from the standard AWS chain (environment, shared config,
instance profile); `AWS_ENDPOINT_URL` works, which is how the tests point us at moto's server.

Error mapping (`classify`):

    ClientError with a throttling/5xx code, timeouts, connection errors -> ProviderUnavailable
    missing credentials or region, auth/permission errors, invalid params -> ProviderRejected
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from control_plane.providers.base import CapacityError, ProviderRejected, ProviderUnavailable

T = TypeVar("T")

TRANSIENT_CODES = frozenset({
    "RequestLimitExceeded", "Throttling", "ThrottlingException", "InternalError",
    "InternalFailure", "ServiceUnavailable", "Unavailable", "RequestTimeout",
    "RequestTimeoutException", "ServerInternal",
})


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def classify(exc: BaseException, what: str) -> CapacityError:
    """Map a botocore/asyncio failure of `what` to the provider's error tree."""
    if isinstance(exc, CapacityError):
        return exc
    if isinstance(exc, ClientError):
        code = error_code(exc)
        text = f"{what}: {code}: {error_message(exc)}"
        if code in TRANSIENT_CODES:
            return ProviderUnavailable(text)
        return ProviderRejected(text)
    if isinstance(exc, TimeoutError):
        return ProviderUnavailable(f"{what}: timed out")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | NoRegionError):
        return ProviderRejected(f"{what}: {exc}")
    if isinstance(exc, HTTPClientError | BotoConnectionError):
        return ProviderUnavailable(f"{what}: {exc}")
    if isinstance(exc, BotoCoreError):
        return ProviderRejected(f"{what}: {exc}")
    return ProviderUnavailable(f"{what}: {type(exc).__name__}: {exc}")


class AwsClients:
    """Lazily opened EC2 and SSM clients; `aclose()` closes whatever was opened."""

    def __init__(
        self,
        *,
        session: aioboto3.Session | None,
        region: str | None,
        endpoint_url: str | None,
        connect_timeout_s: float,
        read_timeout_s: float,
        api_timeout_s: float,
    ) -> None:
        self._session = session or aioboto3.Session()
        self._region = region
        self._endpoint_url = endpoint_url
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self.api_timeout_s = api_timeout_s
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        self._closed = False

    async def _client(self, key: str, service: str, max_attempts: int) -> Any:
        client = self._clients.get(key)
        if client is not None:
            return client
        async with self._lock:
            if self._closed:
                raise ProviderUnavailable("the AWS provider is closed")
            client = self._clients.get(key)
            if client is None:
                config = AioConfig(
                    connect_timeout=self._connect_timeout_s,
                    read_timeout=self._read_timeout_s,
                    retries={"mode": "standard", "total_max_attempts": max_attempts},
                )
                try:
                    client = await self._stack.enter_async_context(self._session.client(
                        service, region_name=self._region, endpoint_url=self._endpoint_url,
                        config=config))
                except Exception as exc:  # region/credentials problems surface here
                    raise classify(exc, f"opening the {service} client") from exc
                self._clients[key] = client
            return client

    async def call(self, what: str, make: Callable[[Any], Awaitable[T]], *,
                   service: str = "ec2", launch: bool = False) -> T:
        """Run `make(client)` under the overall timeout, mapping failures to our errors."""
        key = f"{service}:launch" if launch else service
        client = await self._client(key, service, 1 if launch else 3)
        try:
            async with asyncio.timeout(self.api_timeout_s):
                return await make(client)
        except (ClientError, BotoCoreError, TimeoutError, OSError) as exc:
            raise classify(exc, what) from exc

    async def raw(self, make: Callable[[Any], Awaitable[T]], *, service: str = "ec2",
                  launch: bool = False) -> T:
        """Like `call` but lets ClientError through, for callers that classify codes themselves."""
        key = f"{service}:launch" if launch else service
        client = await self._client(key, service, 1 if launch else 3)
        async with asyncio.timeout(self.api_timeout_s):
            return await make(client)

    async def aclose(self) -> None:
        async with self._lock:
            self._closed = True
            self._clients.clear()
            await self._stack.aclose()

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.observability.stack import Stack
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One running stack per module: starting it costs seconds on a shared machine."""
    running = Stack(logs=tmp_path_factory.mktemp("obs-logs"), redis_url=redis_server.url)
    try:
        yield running.start()
    finally:
        running.stop()

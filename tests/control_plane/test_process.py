"""The control plane as a real process: start, serve agents over HTTP, stop cleanly."""

from __future__ import annotations

import signal
from typing import Any

import httpx
import pytest

from control_plane.main import main
from tests.control_plane.conftest import ADMIN_TOKEN, bearer, beat, register_body
from tests.support.ports import free_port


async def test_the_control_plane_process_serves_agents_and_stops_on_sigterm(
        processes: Any, redis_server: Any, key_prefix: str) -> None:
    port = free_port()
    proc = processes("control_plane", "--host", "127.0.0.1", "--port", str(port),
                     env={"REDIS_URL": redis_server.url, "STORE_PREFIX": key_prefix,
                          "ADMIN_TOKEN": ADMIN_TOKEN, "LOG_FORMAT": "json",
                          "LOG_LEVEL": "debug"})
    base = f"http://127.0.0.1:{port}"
    await proc.wait_http(f"{base}/readyz", timeout=30)
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        first = await client.post("/v1/workers/register", json=register_body())
        assert first.status_code == 201, first.text
        worker_id, token = first.json()["worker_id"], first.json()["bootstrap_token"]
        reply = await client.post(f"/v1/workers/{worker_id}/heartbeat", json=beat(),
                                  headers=bearer(token))
        assert reply.status_code == 200
        listed = await client.get("/v1/workers",
                                  headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert [w["worker_id"] for w in listed.json()["data"]] == [worker_id]
    proc.send_signal(signal.SIGTERM)
    assert await proc.wait_exit(timeout=20) == 0
    log = proc.log_text()
    assert token not in log and ADMIN_TOKEN not in log and redis_server.url not in log
    assert "worker.registered" in log


def test_the_command_refuses_to_start_without_redis_url(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["--port", "8003"]) == 2
    assert "REDIS_URL" in capsys.readouterr().err


def test_bad_settings_name_their_variable(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("WORKER_NETWORKS", "10.0.0.0/8,not-a-network")
    assert main([]) == 2
    assert "WORKER_NETWORKS" in capsys.readouterr().err
    monkeypatch.delenv("WORKER_NETWORKS")
    monkeypatch.setenv("HEARTBEAT_INTERVAL_S", "0")
    assert main([]) == 2
    assert "HEARTBEAT_INTERVAL_S" in capsys.readouterr().err

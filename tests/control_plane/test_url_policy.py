"""Advertised URLs: only addresses plausible for the worker may reach the router."""

from __future__ import annotations

import pytest

from control_plane.settings import DEFAULT_WORKER_NETWORKS
from control_plane.url_policy import UrlPolicy
from fleet.store import INSTANCES
from tests.control_plane.conftest import Running, register_body

POLICY = UrlPolicy(DEFAULT_WORKER_NETWORKS)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000", "http://localhost:8000", "http://10.1.2.3:8000",
    "http://172.16.0.9", "https://192.168.1.20:8443/v1", "http://[::1]:8000",
    "http://[fd00::5]:8000", "http://[::ffff:10.0.0.1]:8000",
])
def test_private_and_loopback_addresses_are_allowed(url: str) -> None:
    assert POLICY.check({"url": url}, None) is None


@pytest.mark.parametrize("url", [
    "http://8.8.8.8:8000", "http://169.254.169.254/latest", "http://172.32.0.1",
    "http://[2001:db8::1]:8000", "http://example.com:8000", "http://metadata.internal",
    "http://2130706433:8000", "http://127.1:8000", "http://0x7f.0.0.1",
])
def test_public_addresses_names_and_odd_spellings_are_refused(url: str) -> None:
    assert POLICY.check({"url": url}, None) is not None


def test_an_aws_worker_must_advertise_its_own_private_ip() -> None:
    doc = {"provider": "aws", "private_ip": "10.0.3.7"}
    assert POLICY.check({"url": "http://10.0.3.7:8000"}, doc) is None
    assert "10.0.3.7" in POLICY.check({"url": "http://10.0.3.8:8000"}, doc)
    assert POLICY.check({"url": "http://127.0.0.1:8000"}, doc) is not None
    assert "no private IP" in POLICY.check({"url": "http://10.0.3.7"}, {"provider": "aws"})


def test_worker_networks_are_configurable() -> None:
    narrow = UrlPolicy(["10.20.0.0/16"])
    assert narrow.check({"url": "http://10.20.1.1"}, None) is None
    assert narrow.check({"url": "http://10.21.1.1"}, None) is not None
    assert narrow.check({"url": "http://localhost"}, None) is not None


async def test_a_public_engine_url_is_refused_with_no_state_change(running: Running) -> None:
    body = register_body(url="http://8.8.8.8:8000")
    reply = await running.client.post("/v1/workers/register", json=body)
    assert reply.status_code == 403
    error = reply.json()["error"]
    assert error["code"] == "url_refused"
    assert "8.8.8.8" in error["message"] and "WORKER_NETWORKS" in error["message"]
    assert await running.store.list_workers() == []
    assert await running.store.get_docs("worker_tokens") == {}  # no token issued either
    agent = register_body(agent_url="http://example.com:8080")
    assert (await running.client.post("/v1/workers/register", json=agent)).status_code == 403


async def test_aws_instance_document_is_enforced_and_copied(running: Running) -> None:
    await running.store.put_doc(INSTANCES, "i-aws", {
        "provider": "aws", "private_ip": "10.0.3.7", "pool": "qwen", "instance_type": "g6.xlarge",
        "zone": "eu-west-1a", "provider_instance_id": "i-0abc"})
    wrong = await running.client.post("/v1/workers/register", json=register_body(
        "i-aws", url="http://10.0.3.8:8000", agent_url="http://10.0.3.7:8080"))
    assert wrong.status_code == 403
    assert "10.0.3.7" in wrong.json()["error"]["message"]
    right = await running.client.post("/v1/workers/register", json=register_body(
        "i-aws", url="http://10.0.3.7:8000", agent_url="http://10.0.3.7:8080"))
    assert right.status_code == 201, right.text
    record = await running.store.get_worker(right.json()["worker_id"])
    assert (record.provider, record.pool, record.instance_type, record.zone,
            record.provider_instance_id) == ("aws", "qwen", "g6.xlarge", "eu-west-1a", "i-0abc")

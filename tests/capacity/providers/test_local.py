"""The local provider: real agent + simulator processes, stopped by PID, nothing left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_plane.providers.base import (
    CapacityProvider,
    Instance,
    LaunchRequest,
    PriceCapExceeded,
)
from control_plane.providers.local import LocalProvider, LocalProviderConfig, simulator_flags
from control_plane.providers.processes import ProcessRef, descendants
from control_plane.providers.reconcile import ReconcileRules, reconcile_once
from fleet.memory_store import MemoryFleetStore
from fleet.store import INSTANCES
from tests.support.ports import free_port
from tests.support.processes import REPO_ROOT

FAST_AGENT = ("--engine-poll-interval-s", "0.1", "--drain-settle-s", "0",
              "--drain-timeout-s", "5", "--engine-stop-grace-s", "5",
              "--engine-restart-backoff-s", "0.2", "--backoff-max-s", "0.5")


def request(**overrides: Any) -> LaunchRequest:
    values: dict[str, Any] = dict(
        pool="tiny", model_id="sim/tiny-chat", engine="vllm", count=1,
        # Nothing listens there: the agents serve and drain without a control plane.
        control_plane_url=f"http://127.0.0.1:{free_port()}")
    values.update(overrides)
    return LaunchRequest(**values)


@pytest.fixture
async def make_local(workdir: Path) -> AsyncIterator[Callable[..., LocalProvider]]:
    made: list[LocalProvider] = []

    def make(**overrides: Any) -> LocalProvider:
        values: dict[str, Any] = dict(
            workdir=workdir, agent_args=FAST_AGENT, terminate_grace_s=15.0,
            pythonpath=str(REPO_ROOT), simulator_args=("--load-s", "0"),
            agent_env={"LOG_LEVEL": "warning"})
        values.update(overrides)
        provider = LocalProvider(LocalProviderConfig(**values))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


async def wait_until(check: Callable[[], Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("condition not met")


async def answers(url: str, status: int = 200) -> bool:
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
        try:
            return (await client.get(url)).status_code == status
        except httpx.HTTPError:
            return False


async def started(provider: LocalProvider, instance_id: str) -> Instance:
    """The instance once its agent process exists (launch returns while it boots)."""
    found: list[Instance] = []

    async def check() -> bool:
        found[:] = [i for i in await provider.list_instances()
                    if i.instance_id == instance_id and "agent_pid" in i.details]
        return bool(found)

    await wait_until(check)
    return found[0]


def process_tree(pid: int) -> list[ProcessRef]:
    ref = ProcessRef.of(pid)
    assert ref is not None
    return [ref, *descendants(pid)]


def test_local_provider_is_registered_by_name() -> None:
    assert CapacityProvider.lookup("local") is LocalProvider


def test_only_engine_flags_the_simulator_models_are_passed_on() -> None:
    kept, dropped = simulator_flags(["--quantization", "awq", "--max-num-seqs", "32",
                                     "--trust-remote-code", "--max-model-len=8192",
                                     "--port", "9"])
    assert kept == ["--max-num-seqs", "32", "--max-model-len=8192"]
    assert dropped == ["--quantization", "awq", "--trust-remote-code", "--port", "9"]


async def test_launch_runs_an_agent_supervising_a_simulator_that_becomes_ready(
        make_local) -> None:
    provider = make_local()
    [instance] = (await provider.launch(request(
        engine_args=("--max-num-seqs", "3", "--quantization", "awq")))).instances
    assert instance.provider == "local" and instance.private_ip == "127.0.0.1"
    details = instance.details
    agent_url = f"http://127.0.0.1:{details['agent_port']}"
    engine_url = f"http://127.0.0.1:{details['engine_port']}"
    await wait_until(lambda: answers(f"{agent_url}/readyz"), timeout=60)
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        models = (await client.get(f"{engine_url}/v1/models")).json()
    assert [m["id"] for m in models["data"]] == ["sim/tiny-chat"]

    [listed] = await provider.list_instances()
    assert listed.instance_id == instance.instance_id and listed.state == "running"
    # The flag the simulator models reached it; the one it does not was left out.
    [engine] = descendants(listed.details["agent_pid"])
    argv = Path(f"/proc/{engine.pid}/cmdline").read_bytes().split(b"\0")
    assert b"--max-num-seqs" in argv and argv[argv.index(b"--max-num-seqs") + 1] == b"3"
    assert b"--quantization" not in argv
    assert await provider.list_instances("other-pool") == []
    token_file = Path(details["dir"]) / "worker-token"
    assert token_file.parent.is_dir()


async def test_terminate_drains_the_agent_which_stops_its_engine(
        make_local, caplog: pytest.LogCaptureFixture) -> None:
    provider = make_local()
    [instance] = (await provider.launch(request())).instances
    running = await started(provider, instance.instance_id)
    await wait_until(lambda: len(descendants(running.details["agent_pid"])) >= 1)
    tree = process_tree(running.details["agent_pid"])

    assert await provider.terminate([instance.instance_id]) == [instance.instance_id]
    [going] = await provider.list_instances()
    assert going.state == "shutting-down"
    await provider.wait_terminated([instance.instance_id], timeout=30)
    assert not any(ref.alive() for ref in tree)
    assert await provider.list_instances() == []
    assert await provider.terminate([instance.instance_id]) == []  # idempotent
    assert not [r for r in caplog.records if "did not exit" in r.getMessage()]  # no SIGKILL


async def test_aclose_leaves_no_process_behind(make_local) -> None:
    provider = make_local()
    instances = (await provider.launch(request(count=2))).instances
    trees = []
    for instance in instances:
        await wait_until(lambda i=instance: answers(
            f"http://127.0.0.1:{i.details['agent_port']}/healthz"))
    for listed in await provider.list_instances():
        await wait_until(lambda p=listed.details["agent_pid"]: descendants(p))
        trees += process_tree(listed.details["agent_pid"])
    assert len(trees) >= 4  # two agents, two simulators
    await provider.aclose()
    assert not any(ref.alive() for ref in trees)
    await provider.aclose()  # idempotent


async def test_boot_delay_keeps_the_instance_booting_and_terminate_cancels_it(
        make_local) -> None:
    provider = make_local(boot_delay_s=30.0)
    [instance] = (await provider.launch(request())).instances
    assert instance.state == "booting"
    [listed] = await provider.list_instances()
    assert listed.state == "booting" and "agent_pid" not in listed.details
    await provider.terminate([instance.instance_id])
    await provider.wait_terminated([instance.instance_id], timeout=5)
    assert await provider.list_instances() == []
    assert not (Path(instance.details["dir"]) / "agent.log").exists()  # never started


async def test_a_new_provider_on_the_same_workdir_takes_over_running_instances(
        make_local) -> None:
    first = make_local()
    [instance] = (await first.launch(request())).instances
    running = await started(first, instance.instance_id)

    second = make_local()  # e.g. the control plane restarted
    [adopted] = await second.list_instances()
    assert adopted.instance_id == instance.instance_id
    assert adopted.details["agent_pid"] == running.details["agent_pid"]
    await wait_until(lambda: descendants(running.details["agent_pid"]))
    tree = process_tree(running.details["agent_pid"])
    await second.terminate([instance.instance_id])
    await second.wait_terminated([instance.instance_id], timeout=30)
    assert not any(ref.alive() for ref in tree)
    assert await first.list_instances() == []  # the first object sees it gone too


async def test_killed_agent_takes_its_engine_along_and_is_forgotten(make_local) -> None:
    provider = make_local()
    [instance] = (await provider.launch(request())).instances
    pid = (await started(provider, instance.instance_id)).details["agent_pid"]
    await wait_until(lambda: descendants(pid))
    tree = process_tree(pid)
    store = MemoryFleetStore()
    await store.ensure_epoch("e")
    await store.put_doc(INSTANCES, instance.instance_id, instance.to_doc())

    os.kill(pid, signal.SIGKILL)  # a crash: no drain
    await wait_until(lambda: not any(ref.alive() for ref in tree), timeout=15)
    assert await provider.list_instances() == []
    actions = await reconcile_once(provider, store, now=time.time(),
                                   rules=ReconcileRules(grace_s=0))
    assert [(a.kind, a.instance_id) for a in actions] == [("forget", instance.instance_id)]


async def test_fake_prices_pick_the_first_type_within_the_ceiling(make_local) -> None:
    provider = make_local(prices={"sim-large": 2.0, "sim-small": 0.5}, boot_delay_s=60)
    assert await provider.price("sim-large") == 2.0
    assert await provider.price("unknown-type") is None
    types = ("sim-large", "sim-small")
    [instance] = (await provider.launch(request(instance_types=types,
                                                max_price_per_hour=1.0))).instances
    assert (instance.instance_type, instance.price_per_hour) == ("sim-small", 0.5)
    with pytest.raises(PriceCapExceeded):
        await provider.launch(request(instance_types=types, max_price_per_hour=0.1))

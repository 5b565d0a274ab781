"""The dashboard at `/`, in headless Chromium against a served control plane on a real Redis.

The page is loaded over a real socket, the operator's steps are done in the browser (type the
token, click), and what they changed is checked through the admin API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from fleet.schemas import RouterReport
from fleet.store import ROUTERS
from tests.control_plane.conftest import ADMIN_TOKEN, eventually
from tests.control_plane.dashboard_support import (
    Served,
    browser_session,
    png_size,
    serve_control_plane,
    sign_in,
    wait_refreshed,
)
from tests.support.readyz_server import ReadyzServer, readyz_server
from tests.support.webdriver import Browser

# The module's tests and fixtures share the browser fixture's event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")

ROW_TEXT = ("return Array.from(document.querySelectorAll('#workers-table tbody tr'),"
            " tr => [tr.dataset.workerId, tr.innerText]);")


@pytest_asyncio.fixture(loop_scope="module")
async def served(redis_server: Any, key_prefix: str) -> AsyncIterator[Served]:
    async with serve_control_plane(str(redis_server.url), key_prefix) as value:
        yield value


@pytest_asyncio.fixture(loop_scope="module")
async def agent() -> AsyncIterator[ReadyzServer]:
    async with readyz_server(200) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browser]:
    """One browser for the module (starting one costs a second or two); every test loads the
    page from its own control plane on its own port, a new origin with empty session storage."""
    async with browser_session(tmp_path_factory.mktemp("chromium")) as value:
        yield value


@pytest_asyncio.fixture(loop_scope="module")
async def browser(shared_browser: Browser) -> AsyncIterator[Browser]:
    """The browser, and after the test: no script error, no CSP violation in the console.
    (Network messages are left out: some tests make the API answer 401 or 422 on purpose.)"""
    await shared_browser.console()  # what earlier tests left
    yield shared_browser
    problems = [m for m in await shared_browser.console()
                if m.get("level") == "SEVERE" and m.get("source") != "network"]
    assert problems == [], problems


async def two_workers(served: Served, agent: ReadyzServer) -> tuple[str, str]:
    """One worker that becomes ready (its probe passes), one still starting."""
    ready = await served.enroll("i-ready", agent.url, instance={
        "provider": "local", "pool": "p1", "instance_type": "g5.xlarge"})
    starting = await served.enroll("i-starting", "http://127.0.0.1:9", status="starting")
    await eventually(lambda: served.cp.registry.is_ready(ready), message="worker ready")
    return ready, starting


async def test_workers_panel_lists_enrolled_workers_and_screenshots(
        served: Served, agent: ReadyzServer, browser: Browser, tmp_path: Path) -> None:
    ready, starting = await two_workers(served, agent)
    report = RouterReport(router_id="router-a", ts=served.cp.clock(), started_at=0.0,
                          circuits={ready: "healthy", starting: "circuit_open"})
    await served.store.put_doc(ROUTERS, "router-a", report)

    await browser.get(served.url + "/")
    assert await browser.run("return document.getElementById('dashboard').hidden")
    assert not await browser.run("return document.getElementById('sign-in').hidden")
    await sign_in(browser, served.url)
    await wait_refreshed(browser)

    rows = dict(await browser.run(ROW_TEXT))
    assert set(rows) == {ready, starting}
    assert "ready" in rows[ready] and "m1" in rows[ready]
    assert "g5.xlarge" in rows[ready] and "p1" in rows[ready]
    assert "router-a: healthy" in rows[ready]
    assert "starting" in rows[starting] and "router-a: circuit_open" in rows[starting]
    assert await browser.text(await browser.find("#workers-ready")) == "1 / 2"
    # The timeline shows what happened, newest first.
    events = await browser.run("return document.getElementById('events-list').innerText")
    assert "worker.registered" in events and "worker.ready" in events
    # The token lives in this tab's session storage only: not in the URL, not in local storage.
    assert await browser.run("return sessionStorage.getItem('flotilla.adminToken')") == ADMIN_TOKEN
    assert await browser.run("return localStorage.length") == 0
    assert ADMIN_TOKEN not in await browser.run("return location.href")
    assert await browser.run("return document.getElementById('token-input').value") == ""

    png = await browser.screenshot(tmp_path / "shots" / "dashboard.png")
    viewport = await browser.run("return [window.innerWidth, window.innerHeight]")
    assert png_size(png) == tuple(viewport)


async def test_drain_button_takes_two_clicks_and_drains_the_worker(
        served: Served, agent: ReadyzServer, browser: Browser) -> None:
    ready, starting = await two_workers(served, agent)
    await sign_in(browser, served.url)
    await wait_refreshed(browser)
    button = await browser.find(f'button.drain[data-worker-id="{ready}"]')
    await browser.click(button)
    assert await browser.text(button) == "Confirm drain"
    assert not (await served.worker(ready))["draining"]  # the first click only arms it

    await browser.click(button)
    worker = await eventually(lambda: _draining(served, ready), message="drain via the page")
    assert worker["drain_reason"] == "dashboard"
    assert not (await served.worker(starting))["draining"]
    await browser.wait_for(
        "const tr = document.querySelector(`#workers-table tr[data-worker-id='${arguments[0]}']`);"
        "return tr && tr.innerText.includes('draining');", ready, message="row shows draining")
    assert "is draining" in await browser.text(await browser.find("#banner"))


async def _draining(served: Served, worker_id: str) -> dict[str, Any] | None:
    worker = await served.worker(worker_id)
    return worker if worker["draining"] else None


async def test_a_refused_token_returns_to_the_sign_in_form(served: Served,
                                                           browser: Browser) -> None:
    await sign_in(browser, served.url, token="not-the-admin-token")
    message = await browser.wait_for(
        "const e = document.getElementById('sign-in-error');"
        "return !e.hidden && e.textContent;", message="sign-in error")
    assert "refused" in message
    assert await browser.run("return sessionStorage.getItem('flotilla.adminToken')") is None
    assert await browser.run("return document.getElementById('dashboard').hidden")


async def test_hostile_strings_from_the_store_are_shown_as_text(
        served: Served, agent: ReadyzServer, browser: Browser) -> None:
    worker_id = await served.enroll("i-1", agent.url)
    hostile = '<img id="injected" src="x" onerror="document.title=\'owned\'">'
    report = RouterReport(router_id=hostile, ts=served.cp.clock(), started_at=0.0,
                          circuits={worker_id: "<b id=\"bold\">open</b>"})
    await served.store.put_doc(ROUTERS, hostile, report)
    await sign_in(browser, served.url)
    await wait_refreshed(browser)
    circuits = await browser.text(await browser.find(f'tr[data-worker-id="{worker_id}"] .circuits'))
    assert hostile in circuits and '<b id="bold">open</b>' in circuits
    assert await browser.run("return document.querySelectorAll('#injected, #bold').length") == 0
    assert await browser.run("return document.title") != "owned"


async def test_an_empty_fleet_shows_empty_states_not_errors(served: Served,
                                                             browser: Browser) -> None:
    await sign_in(browser, served.url)
    await wait_refreshed(browser)
    text = await browser.run("return document.getElementById('dashboard').innerText")
    assert "No workers enrolled yet." in text
    assert await browser.run("return document.getElementById('workers-table').hidden")
    assert await browser.run("return document.getElementById('banner').hidden")
    errors = await browser.run("return Array.from(document.querySelectorAll('.panel-error'),"
                               " e => e.hidden ? '' : e.textContent).join('')")
    assert errors == ""
    assert "No pools yet" in text and "No burst yet." in text
    cost = (await served.client.get("/v1/cost", headers=served.admin)).json()
    assert (cost["per_hour_usd"], cost["total_usd"]) == (0, 0)
    assert await browser.text(await browser.find("#cost-per-hour")) == "$0.00"
    assert (await browser.text(await browser.find("#cost-since"))).startswith("since ")


async def test_polling_pauses_while_the_tab_is_hidden_and_resumes_at_once(
        served: Served, browser: Browser) -> None:
    await sign_in(browser, served.url)
    first = await wait_refreshed(browser)
    await browser.wait_for("return document.body.dataset.polling === 'on'", message="polling")

    await browser.minimize()  # the tab becomes hidden, as when the operator switches away
    assert await browser.run("return document.visibilityState") == "hidden"
    await browser.wait_for("return document.body.dataset.polling === 'paused'",
                           message="polling paused")
    status = await browser.text(await browser.find("#refresh-status"))
    assert status == "paused while the tab is hidden"

    await browser.set_window_size(1280, 900)  # visible again: refreshed now, not at the next tick
    assert await browser.run("return document.visibilityState") == "visible"
    await wait_refreshed(browser, after=first)
    await browser.wait_for("return document.body.dataset.polling === 'on'", message="polling")


POOL = {"model_id": "m1", "engine": "vllm", "provider": "local", "min_replicas": 0,
        "max_replicas": 3, "target_queue_depth": 4, "ttft_p95_slo_ms": 800}


async def put_pool(served: Served, name: str, **fields: Any) -> None:
    reply = await served.client.put(f"/v1/pools/{name}", json={**POOL, **fields},
                                    headers=served.admin)
    assert reply.status_code in (200, 201), reply.text


POOL_ROWS = ("return Array.from(document.querySelectorAll('#pools-table tbody tr'),"
             " tr => [tr.dataset.pool, tr.innerText]);")


async def test_pools_panel_lists_pools_and_offers_them_to_the_forms(
        served: Served, browser: Browser) -> None:
    await put_pool(served, "chat")
    await put_pool(served, "embed", model_id="e1", engine="tei", max_replicas=2)
    await sign_in(browser, served.url)
    await wait_refreshed(browser)
    rows = dict(await browser.run(POOL_ROWS))
    assert set(rows) == {"chat", "embed"}
    assert "m1" in rows["chat"] and "local" in rows["chat"] and "0–3" in rows["chat"]
    assert "e1" in rows["embed"] and "0–2" in rows["embed"]
    for select in ("#scale-pool", "#burst-pool-input"):
        options = await browser.run(
            "return Array.from(document.querySelector(arguments[0]).options, o => o.value)",
            select)
        assert options == ["chat", "embed"], select


async def pool_status(served: Served, name: str) -> dict[str, Any]:
    reply = await served.client.get(f"/v1/pools/{name}", headers=served.admin)
    assert reply.status_code == 200, reply.text
    return dict(reply.json()["status"])


async def test_scaling_a_pool_from_the_page_sets_its_desired_replicas(
        served: Served, browser: Browser) -> None:
    await put_pool(served, "chat", max_replicas=3)
    await put_pool(served, "embed", model_id="e1", engine="tei", max_replicas=2)
    await sign_in(browser, served.url)
    await wait_refreshed(browser)
    assert (await pool_status(served, "chat"))["desired_replicas"] == 0

    await browser.run("const s = document.getElementById('scale-pool'); s.value = 'chat';")
    replicas = await browser.find("#scale-replicas")
    await browser.type(replicas, "2")
    await browser.click(await browser.find("#scale-submit"))

    status = await eventually(lambda: _desired(served, "chat", 2), message="desired 2")
    assert status["last_decision"]["direction"] in ("up", "manual")
    assert (await pool_status(served, "embed"))["desired_replicas"] == 0
    await browser.wait_for(
        "const tr = document.querySelector(\"#pools-table tr[data-pool='chat']\");"
        "return tr && tr.querySelector('.replicas').innerText.endsWith('/ 2');",
        message="the chat row shows 2 desired")
    assert "scaled to 2" in await browser.text(await browser.find("#banner"))


async def _desired(served: Served, name: str, replicas: int) -> dict[str, Any] | None:
    status = await pool_status(served, name)
    return status if status["desired_replicas"] == replicas else None


async def test_a_burst_started_and_cancelled_from_the_page(served: Served,
                                                           browser: Browser) -> None:
    await put_pool(served, "chat", max_replicas=3)
    await sign_in(browser, served.url)
    await wait_refreshed(browser)
    assert "No burst yet." in await browser.text(await browser.find("#burst-empty"))

    await browser.clear(replicas := await browser.find("#burst-replicas"))
    await browser.type(replicas, "2")
    await browser.type(await browser.find("#burst-duration"), "600")
    await browser.type(await browser.find("#burst-budget"), "5")
    await browser.click(await browser.find("#burst-submit"))

    bursts = await eventually(lambda: _bursts(served), message="a burst")
    (burst,) = bursts
    assert (burst["pool"], burst["replicas"], burst["duration_s"], burst["budget_usd"]) == (
        "chat", 2, 600, 5)
    await browser.wait_for("return document.getElementById('burst-active').dataset.burstId"
                           " === arguments[0]", burst["id"], message="the burst shown")
    assert await browser.text(await browser.find("#burst-state")) == burst["state"]
    assert await browser.run("return document.getElementById('burst-progress').position") >= 0
    facts = await browser.text(await browser.find("#burst-facts"))
    assert "of $5.00" in facts and "/ 2" in facts
    timeline = await browser.text(await browser.find("#burst-timeline"))
    assert burst["events"] and burst["events"][0]["message"] in timeline

    cancel = await browser.find("#burst-cancel")
    await browser.click(cancel)
    assert await browser.text(cancel) == "Confirm cancel"
    assert (await _bursts(served))[0]["state"] == burst["state"]  # armed, not yet cancelled
    await browser.click(cancel)
    ended = await eventually(lambda: _ended(served), message="burst ended")
    assert ended["end_reason"] == "cancelled"
    await browser.wait_for("return document.getElementById('burst-cancel').hidden",
                           message="cancel button gone")
    state = await browser.text(await browser.find("#burst-state"))
    assert state == f"{ended['state']} (cancelled)"
    assert await browser.text(await browser.find("#burst-summary")) == "none active"


async def _bursts(served: Served) -> list[dict[str, Any]]:
    reply = await served.client.get("/v1/bursts", headers=served.admin)
    assert reply.status_code == 200, reply.text
    return list(reply.json()["data"])


async def _ended(served: Served) -> dict[str, Any] | None:
    bursts = await _bursts(served)
    return bursts[0] if bursts and bursts[0]["state"] in ("completed", "failed") else None


async def test_an_action_the_api_refuses_shows_its_error_and_changes_nothing(
        served: Served, browser: Browser) -> None:
    await put_pool(served, "chat", max_replicas=3)
    await sign_in(browser, served.url)
    await wait_refreshed(browser)
    # Neither a duration nor an idle timeout: the bursts API refuses (it would never end).
    await browser.click(await browser.find("#burst-submit"))
    message = await browser.wait_for(
        "const b = document.getElementById('banner');"
        "return !b.hidden && b.classList.contains('error') && b.textContent;",
        message="the API's error in the banner")
    assert "duration_s" in message or "idle_timeout_s" in message
    assert await _bursts(served) == []
    # The error stays until the operator does something else: a refresh keeps it.
    before = await browser.run("return Date.now()")
    await browser.click(await browser.find("#refresh-now"))
    await wait_refreshed(browser, after=before)
    assert await browser.text(await browser.find("#banner")) == message

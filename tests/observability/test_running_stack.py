"""A running stack of real processes seen the way an operator sees it: a real Prometheus,
configured from the shipped config, scrapes the router, the control plane and both enrolled
workers' agents (found through `/sd/workers`); and one request is followed by its id through the
router's and the engine's JSON logs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import _require_binary
from tests.deploy.test_grafana import queries as dashboard_queries
from tests.observability.prometheus import PrometheusServer, local_config
from tests.observability.stack import MODEL, Stack, wait_until
from tests.support.processes import ManagedProcess


@pytest.fixture
def prometheus(stack: Stack, tmp_path: Path) -> Iterator[PrometheusServer]:
    _require_binary("prometheus")
    config = local_config(router=stack.router_url.removeprefix("http://"),
                          control_plane=stack.control_plane_url.removeprefix("http://"))
    server = PrometheusServer(tmp_path / "prometheus", config).start()
    try:
        yield server
    finally:
        server.stop()


def test_prometheus_scrapes_every_enrolled_worker_through_http_sd(
        stack: Stack, prometheus: PrometheusServer) -> None:
    def scraped_up() -> dict[str, list[dict[str, object]]] | None:
        if not prometheus.alive():
            raise RuntimeError(f"prometheus exited:\n{prometheus.log_text()[-3000:]}")
        by_job = {job: prometheus.query(f'up{{job="{job}"}} == 1')
                  for job in ("workers", "router", "control-plane")}
        if len(by_job["workers"]) == len(stack.workers) and by_job["router"] \
                and by_job["control-plane"]:
            return by_job
        return None

    up = wait_until(scraped_up, timeout=25, what="every target up in Prometheus")
    workers = up["workers"]
    labels = [w["metric"] for w in workers]
    # The shipped relabelling: instance is the machine's id, worker_id and model_id attached.
    assert sorted(m["instance"] for m in labels) == ["obs-0", "obs-1"]  # type: ignore[index]
    assert all(m["model_id"] == MODEL and m["worker_id"].startswith("w")  # type: ignore[index]
               for m in labels), labels
    # The agents' own metrics arrived with those labels, the ones dashboards and alerts join on.
    ready = wait_until(lambda: prometheus.query("flotilla_agent_ready == 1"), timeout=10,
                       what="flotilla_agent_ready scraped")
    assert {r["metric"]["worker_id"] for r in ready} == {m["worker_id"] for m in labels}
    # The shipped rule files loaded, and the alert groups (evaluated at the global interval,
    # 1 s here) evaluate without errors against real series.
    def alerts_evaluated() -> list[dict[str, object]] | None:
        groups = httpx.get(prometheus.url + "/api/v1/rules", timeout=2).json()["data"]["groups"]
        alerting = [rule for group in groups for rule in group["rules"]
                    if rule["type"] == "alerting"]
        return alerting if alerting and all(r["health"] != "unknown" for r in alerting) else None

    alerting = wait_until(alerts_evaluated, timeout=10, what="alert rules evaluated")
    assert {r["health"] for r in alerting} == {"ok"}, [r for r in alerting if r["health"] != "ok"]
    # Every query of the shipped Grafana dashboard is valid PromQL for this Prometheus.
    for expr in dashboard_queries():
        concrete = expr.replace("$model", ".*").replace("$pool", ".*")
        prometheus.query(concrete)  # raises on a 400 (bad expression)


def _json_lines(proc: ManagedProcess) -> list[dict[str, object]]:
    lines = []
    for line in proc.log_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))  # every line a service writes is one JSON object
    return lines


def test_one_request_id_in_the_router_and_engine_json_logs(stack: Stack) -> None:
    key = stack.create_key()
    with openai.OpenAI(base_url=stack.router_url + "/v1", api_key=key, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "trace me"}])
        assert raw.parse().choices[0].message.content
        request_id = raw.headers["x-request-id"]
        # A client's own id is kept end to end too.
        client.completions.create(model=MODEL, prompt="hi",
                                  extra_headers={"x-request-id": "client-chosen-id.42"})
    router = next(p for p in stack.processes if p.name == "router")
    sims = [w.sim for w in stack.workers]

    def logged(proc: ManagedProcess, rid: str, logger: str) -> list[dict[str, object]]:
        return [line for line in _json_lines(proc)
                if line.get("request_id") == rid and line.get("logger") == logger]

    for rid, path in ((request_id, "/v1/chat/completions"), ("client-chosen-id.42",
                                                             "/v1/completions")):
        (access,) = wait_until(lambda rid=rid: logged(router, rid, "router.access"), timeout=10,
                               what=f"router access line for {rid}")
        assert access["status"] == 200 and access["path"] == path
        assert access["model"] == MODEL and str(access["target"])
        engine_lines = wait_until(
            lambda rid=rid: [line for sim in sims for line in logged(sim, rid, "simulator.access")],
            timeout=10, what=f"engine access line for {rid}")
        assert len(engine_lines) == 1, engine_lines  # served once, by one of the two engines
        assert engine_lines[0]["path"] == path and engine_lines[0]["status"] == 200

"""A real Prometheus server (Debian's `prometheus` binary) for tests, configured from the shipped
deploy/prometheus/prometheus.yml with its targets pointed at loopback ports.

Only addresses change: the jobs, the relabelling and the rule files are the shipped ones, so a
broken discovery or relabel rule in the deployment config fails the test.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.ports import free_port
from tests.support.processes import REPO_ROOT

SHIPPED = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"


def local_config(*, router: str, control_plane: str, interval: str = "1s") -> dict[str, Any]:
    """The shipped config with `router` and `control_plane` (host:port) as the only targets."""
    config = yaml.safe_load(SHIPPED.read_text())
    config["global"].update(scrape_interval=interval, scrape_timeout=interval,
                            evaluation_interval=interval)
    config["rule_files"] = [str(SHIPPED.parent / pattern) for pattern in config["rule_files"]]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    router_job = jobs["router"]
    router_job.pop("dns_sd_configs")
    router_job["static_configs"] = [{"targets": [router]}]
    jobs["control-plane"]["static_configs"] = [{"targets": [control_plane]}]
    (sd,) = jobs["workers"]["http_sd_configs"]
    sd["url"] = f"http://{control_plane}/sd/workers"
    sd["refresh_interval"] = interval
    return config


class PrometheusServer:
    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise FileNotFoundError("prometheus")
        self.binary = binary
        self.workdir = workdir
        self.config = config
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self.config))
        self._log = open(self.workdir / "prometheus.log", "ab")  # noqa: SIM115 - closed in stop
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={config_path}",
             f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=1h", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=2.0)
        response.raise_for_status()
        return list(response.json()["data"]["result"])

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()

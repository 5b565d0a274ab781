"""The systems the peer benchmark compares, each started in front of the same pair of simulators.

    direct         no proxy: the client alternates between the two simulators itself
    router         Flotilla's router (least_outstanding, auth + metrics on, fleet store in Redis)
    nginx          Debian nginx, least_conn, keepalive, buffering off (a reverse-proxy floor)
    sglang-router  the Rust router from `pip install sglang-router` (round_robin, its default
                   backend: with `--backend openai` 0.3.2 sends every request to one worker)
    litellm        LiteLLM's proxy from `pip install 'litellm[proxy]'`, one worker

Each peer binary is found from a flag or an environment variable, then the peers' virtualenv
(`--peers-venv`, default /work/peers-venv: see scripts/bench/install_peers.sh), then PATH. A peer
that cannot be found is skipped with a message saying how to install it; the others still run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness import Proc, Procs, free_port, wait_http
from router_bench import MODEL, litellm_config, nginx_conf, seed_store, start_router

ALL = ("direct", "router", "nginx", "sglang-router", "litellm")
LABELS = {
    "direct": "direct (no proxy)",
    "router": "flotilla router",
    "nginx": "nginx",
    "sglang-router": "sglang-router (Rust)",
    "litellm": "LiteLLM proxy",
}
INSTALL_HINT = "scripts/bench/install_peers.sh (or: make bench-peers-deps)"


@dataclass
class Binaries:
    """Where each peer's executable is; None when it is not installed."""

    nginx: str | None
    sglang_router: str | None
    litellm: str | None

    @classmethod
    def find(cls, peers_venv: str, nginx: str | None, sglang_router: str | None,
             litellm: str | None) -> Binaries:
        def pick(explicit: str | None, env: str, name: str) -> str | None:
            for candidate in (explicit, os.environ.get(env), str(Path(peers_venv) / "bin" / name)):
                if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
                    return candidate
            return shutil.which(name)

        return cls(nginx=pick(nginx, "NGINX_BIN", "nginx"),
                   sglang_router=pick(sglang_router, "SGLANG_ROUTER_BIN", "sglang-router"),
                   litellm=pick(litellm, "LITELLM_BIN", "litellm"))

    def missing(self, system: str) -> str | None:
        """Why `system` cannot run here, or None."""
        if system == "nginx" and not self.nginx:
            return "nginx not found (--nginx-bin / NGINX_BIN; Debian: apt-get install nginx)"
        if system == "sglang-router" and not self.sglang_router:
            return ("sglang-router not found (--sglang-router-bin / SGLANG_ROUTER_BIN); install: "
                    + INSTALL_HINT)
        if system == "litellm" and not self.litellm:
            return "litellm not found (--litellm-bin / LITELLM_BIN); install: " + INSTALL_HINT
        return None

    def versions(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.nginx:
            done = subprocess.run([self.nginx, "-v"], capture_output=True, text=True, timeout=30)
            out["nginx"] = done.stderr.strip().removeprefix("nginx version: ")
        for key, binary, dist in (("sglang-router", self.sglang_router, "sglang-router"),
                                  ("litellm", self.litellm, "litellm")):
            if binary:
                out[key] = _dist_version(binary, dist)
        return out


def _dist_version(binary: str, dist: str) -> str:
    """The installed version of `dist`, asked of the Python beside `binary` (its venv)."""
    python = Path(binary).parent / "python"
    if not python.exists():
        return "unknown"
    done = subprocess.run([str(python), "-c", "import importlib.metadata as m, sys; "
                           f"print(m.version({dist!r}))"], capture_output=True, text=True,
                          timeout=60)
    return done.stdout.strip() or "unknown"


@dataclass
class System:
    key: str
    urls: list[str]  # the client's targets: one proxy, or (direct) every simulator in turn
    proc: Proc | None  # None for direct: nothing between client and simulators
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return LABELS[self.key]

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


@dataclass
class Context:
    procs: Procs
    workdir: Path
    binaries: Binaries
    redis_url: str
    sut_cpus: str | None
    sglang_policy: str
    litellm_strategy: str


def start(system: str, ctx: Context, sims: list[str], tag: str) -> System:
    """Start `system` in front of `sims`; `tag` keeps its files and store keys apart."""
    if system == "direct":
        return System("direct", list(sims), None)
    if system == "router":
        key = asyncio.run(seed_store(ctx.redis_url, f"peers-{tag}", sims))
        url, pid = start_router(ctx.procs, ctx.redis_url, f"peers-{tag}", "least_outstanding",
                                f"router-{tag}")
        proc = next(p for p in ctx.procs.started if p.pid == pid)
        return System("router", [url], proc, {"Authorization": f"Bearer {key}"})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    directory = ctx.workdir / f"{system}-{tag}"
    directory.mkdir(parents=True, exist_ok=True)
    if system == "nginx":
        assert ctx.binaries.nginx
        conf = nginx_conf(directory, port, sims)
        proc = ctx.procs.start(f"nginx-{tag}", [ctx.binaries.nginx, "-c", str(conf), "-p",
                                                str(directory), "-g", "daemon off;"],
                               cpus=ctx.sut_cpus)
        wait_http(url + "/health", proc)
        return System("nginx", [url], proc)
    if system == "sglang-router":
        assert ctx.binaries.sglang_router
        proc = ctx.procs.start(f"sglang-router-{tag}", [
            ctx.binaries.sglang_router, "launch", "--host", "127.0.0.1", "--port", str(port),
            "--worker-urls", *sims, "--policy", ctx.sglang_policy, "--log-level", "warn"],
            cpus=ctx.sut_cpus)  # not --backend openai: 0.3.2 then sends everything to one worker
        wait_http(url + "/health", proc, timeout=90)
        return System("sglang-router", [url], proc)
    if system == "litellm":
        assert ctx.binaries.litellm
        conf = litellm_config(directory, sims)
        if ctx.litellm_strategy:
            with conf.open("a") as f:
                f.write(f"router_settings:\n  routing_strategy: {ctx.litellm_strategy}\n")
        master = "sk-bench-master"
        proc = ctx.procs.start(f"litellm-{tag}", [
            ctx.binaries.litellm, "--config", str(conf), "--host", "127.0.0.1", "--port",
            str(port), "--num_workers", "1"], cpus=ctx.sut_cpus,
            # Its model price map from the package, not fetched from GitHub: traffic stays local.
            env={"LITELLM_MASTER_KEY": master, "LITELLM_LOG": "ERROR",
                 "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
        wait_http(url + "/health/liveliness", proc, timeout=300)
        return System("litellm", [url], proc, {"Authorization": f"Bearer {master}"})
    raise ValueError(f"unknown system {system!r}; known: {', '.join(ALL)}")


__all__ = ["ALL", "MODEL", "Binaries", "Context", "System", "start"]

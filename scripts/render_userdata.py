#!/usr/bin/env python3
"""Print the EC2 user-data the control plane would give a worker of a pool, to inspect it.

The script is the control plane's own renderer (control_plane/providers/userdata.py), fed with a
pool document (the body of `PUT /v1/pools/{name}`, as a JSON file) and/or flags; flags win. The
instance id is a placeholder unless given: the control plane picks a fresh one per launch.

    python scripts/render_userdata.py --pool-file pool.json \\
        --control-plane-url http://10.42.0.10:8003 --agent-package 'flotilla==0.1.0'
    python scripts/render_userdata.py --model-id Qwen/Qwen2.5-7B-Instruct --engine vllm \\
        --control-plane-url http://10.42.0.10:8003 --agent-package 'flotilla==0.1.0' --check

`--check` also runs `bash -n` on the result (syntax only, nothing executes) and reports its size
against EC2's 16 KiB user-data limit.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

from control_plane.providers.userdata import (  # noqa: E402
    USER_DATA_LIMIT,
    BootSpec,
    render,
)

PLACEHOLDER_INSTANCE_ID = "i-flotilla-preview"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool-file", type=Path,
                        help="pool document (JSON, the PUT /v1/pools/{name} body)")
    parser.add_argument("--model-id", help="MODEL_ID (default: the pool's model_id)")
    parser.add_argument("--engine", choices=("vllm", "tei"),
                        help="engine (default: the pool's, else vllm)")
    parser.add_argument("--control-plane-url", required=True,
                        help="the control plane as workers reach it (private address)")
    parser.add_argument("--agent-package", required=True,
                        help="pip requirement the worker installs for the agent")
    parser.add_argument("--instance-id", default=PLACEHOLDER_INSTANCE_ID)
    parser.add_argument("--tensor-parallel-size", type=int)
    parser.add_argument("--gpu-memory-utilization", type=float)
    parser.add_argument("--engine-arg", action="append", default=[], dest="engine_args",
                        help="extra engine argument (repeat)")
    parser.add_argument("--vllm-image")
    parser.add_argument("--tei-image")
    parser.add_argument("--hf-token-parameter", help="SSM SecureString name holding HF_TOKEN")
    parser.add_argument("--drain-timeout-s", type=int)
    parser.add_argument("--check", action="store_true",
                        help="bash -n the script and check EC2's size limit")
    return parser.parse_args(argv)


def boot_spec(args: argparse.Namespace) -> BootSpec:
    pool: dict[str, Any] = {}
    if args.pool_file is not None:
        pool = json.loads(args.pool_file.read_text())
        if not isinstance(pool, dict):
            raise ValueError(f"{args.pool_file}: a pool document is a JSON object")
    model_id = args.model_id or pool.get("model_id")
    if not model_id:
        raise ValueError("no model: give --model-id or a --pool-file with model_id")
    optional: dict[str, object] = {}
    for name in ("vllm_image", "tei_image", "hf_token_parameter", "drain_timeout_s"):
        if getattr(args, name) is not None:
            optional[name] = getattr(args, name)
    tensor_parallel = args.tensor_parallel_size or pool.get("tensor_parallel_size")
    gpu_memory = args.gpu_memory_utilization or pool.get("gpu_memory_utilization")
    engine_args = args.engine_args or pool.get("engine_args") or []
    return BootSpec(
        instance_id=args.instance_id, control_plane_url=args.control_plane_url,
        model_id=str(model_id), engine=str(args.engine or pool.get("engine") or "vllm"),
        agent_package=args.agent_package, engine_args=tuple(str(a) for a in engine_args),
        tensor_parallel_size=int(tensor_parallel) if tensor_parallel else None,
        gpu_memory_utilization=float(gpu_memory) if gpu_memory else None,
        **optional)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        script = render(boot_spec(args))
    except (ValueError, OSError) as exc:
        print(f"render_userdata: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(script)
    if args.check:
        size = len(script.encode())
        print(f"# {size} bytes of {USER_DATA_LIMIT} allowed", file=sys.stderr)
        if size > USER_DATA_LIMIT:
            print("render_userdata: over EC2's user-data limit", file=sys.stderr)
            return 1
        bash = shutil.which("bash")
        if bash is not None:
            result = subprocess.run([bash, "-n"], input=script, text=True,
                                    capture_output=True, timeout=30)
            if result.returncode != 0:
                print(f"render_userdata: bash -n: {result.stderr}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

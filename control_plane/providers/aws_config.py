"""Configuration of the AWS capacity provider (one frozen dataclass, passed in, never global).

See docs/capacity.md for what each field does and the IAM permissions the provider needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from control_plane.providers.base import check_safe_value

# The Deep Learning Base AMI (OSS NVIDIA driver, Docker + NVIDIA container toolkit), Ubuntu 24.04
# for a Python >= 3.11 to run the agent. Name rule: docs.aws.amazon.com/dlami/latest/devguide/
# find-dlami-id.html ("/aws/service/deeplearning/ami/$arch/$ami_type/latest/ami-id").
DEFAULT_AMI_PARAMETER = (
    "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id")


@dataclass(frozen=True)
class AwsProviderConfig:
    cluster: str  # value of the flotilla:cluster tag: separates control planes sharing an account
    agent_package: str  # pip requirement the instance installs (wheel URL, private index pin)
    region: str | None = None  # None: the standard AWS chain (AWS_REGION, profile, ...)
    endpoint_url: str | None = None  # None: AWS_ENDPOINT_URL if set, else the real endpoint
    subnet_ids: tuple[str, ...] = ()  # empty: the default subnet of every zone (default VPC)
    security_group_ids: tuple[str, ...] = ()
    ami_id: str | None = None  # None: resolved from `ami_parameter` through SSM
    ami_parameter: str = DEFAULT_AMI_PARAMETER
    instance_profile: str | None = None  # name or ARN (for the HF token parameter, logs)
    key_name: str | None = None
    root_volume_gb: int | None = None  # None: the AMI's default size
    default_instance_types: tuple[str, ...] = ()
    on_demand_prices: Mapping[str, float] = field(default_factory=dict)  # $/h, operator's figures
    spot_price_ttl_s: float = 300.0
    ami_ttl_s: float = 3600.0
    product_description: str = "Linux/UNIX"
    vllm_image: str = "vllm/vllm-openai:latest"
    tei_image: str = "ghcr.io/huggingface/text-embeddings-inference:1.5"
    hf_token_parameter: str | None = None
    drain_timeout_s: int = 120
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    api_timeout_s: float = 60.0  # one call, botocore retries included
    launch_retries: int = 2  # extra tries of one slot after a transient failure (same token)
    launch_retry_delay_s: float = 1.0

    def __post_init__(self) -> None:
        check_safe_value("cluster", self.cluster)

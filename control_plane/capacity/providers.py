"""The capacity providers this control plane uses, built once from its settings.

`CONTROL_PLANE_PROVIDERS` names them (`local` by default; `local,aws` for EC2 as well). Both share
one `DemotionTracker`, so interruptions the control plane hears of (Spot notices through worker
heartbeats) steer the AWS provider's placement away from that (type, zone).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from control_plane.providers.aws import AwsProvider, AwsProviderConfig
from control_plane.providers.aws_config import DEFAULT_AMI_PARAMETER
from control_plane.providers.base import CapacityProvider
from control_plane.providers.interruptions import DemotionTracker
from control_plane.providers.local import LocalProvider, LocalProviderConfig
from control_plane.settings import ControlPlaneSettings, parse_prices


def local_config(settings: ControlPlaneSettings) -> LocalProviderConfig:
    return LocalProviderConfig(
        workdir=Path(settings.local_workdir),
        boot_delay_s=settings.local_boot_delay_s,
        prices=parse_prices("CONTROL_PLANE_LOCAL_PRICES", settings.local_prices),
        simulator_args=tuple(shlex.split(settings.local_simulator_args)),
        agent_args=tuple(shlex.split(settings.local_agent_args)),
        imds_url=settings.local_imds_url,
        terminate_grace_s=settings.local_terminate_grace_s)


def aws_config(settings: ControlPlaneSettings) -> AwsProviderConfig:
    return AwsProviderConfig(
        cluster=settings.aws_cluster, agent_package=settings.aws_agent_package,
        region=settings.aws_region, endpoint_url=settings.aws_endpoint_url,
        subnet_ids=settings.aws_subnet_ids, security_group_ids=settings.aws_security_group_ids,
        ami_id=settings.aws_ami_id,
        ami_parameter=settings.aws_ami_parameter or DEFAULT_AMI_PARAMETER,
        instance_profile=settings.aws_instance_profile, key_name=settings.aws_key_name,
        root_volume_gb=settings.aws_root_volume_gb,
        on_demand_prices=parse_prices("CONTROL_PLANE_AWS_ON_DEMAND_PRICES",
                                      settings.aws_on_demand_prices),
        hf_token_parameter=settings.aws_hf_token_parameter,
        drain_timeout_s=int(settings.drain_timeout_s))


def build_providers(settings: ControlPlaneSettings, demotions: DemotionTracker
                    ) -> dict[str, CapacityProvider]:
    providers: dict[str, CapacityProvider] = {}
    if "local" in settings.providers:
        providers["local"] = LocalProvider(local_config(settings))
    if "aws" in settings.providers:
        providers["aws"] = AwsProvider(aws_config(settings), demotions=demotions)
    return providers

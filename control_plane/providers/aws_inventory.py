"""What the AWS provider manages, read back from EC2 by tag: the source of truth for reconcile.

An instance is ours when it carries `flotilla:cluster=<cluster>` and `flotilla:managed=true`; its
facts (`Instance`) come from DescribeInstances and its tags (our instance id, pool, model, the
price recorded at launch). Terminated instances are not listed; shutting-down ones are, with that
state, so reconcile can tell "going" from "gone".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from control_plane.providers.aws_client import AwsClients
from control_plane.providers.base import (
    TAG_CLUSTER,
    TAG_INSTANCE_ID,
    TAG_MANAGED,
    TAG_MODEL,
    TAG_POOL,
    Instance,
    Market,
)

log = logging.getLogger("flotilla.capacity.aws")

TAG_PRICE = "flotilla:price-per-hour"
LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")


async def describe_managed(aws: AwsClients, cluster: str, extra_filters: list[dict[str, Any]],
                           clock: Any) -> list[Instance]:
    """Every live instance of `cluster` matching `extra_filters` (all pages)."""
    filters = [
        {"Name": f"tag:{TAG_CLUSTER}", "Values": [cluster]},
        {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]},
        {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
        *extra_filters,
    ]

    async def describe(client: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        paginator = client.get_paginator("describe_instances")
        async for page in paginator.paginate(Filters=filters):
            for reservation in page.get("Reservations", []):
                rows.extend(reservation.get("Instances", []))
        return rows

    instances = []
    for raw in await aws.call("DescribeInstances", describe):
        tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
        if TAG_INSTANCE_ID not in tags:
            log.warning("instance %s carries our cluster tag but no %s tag; left alone",
                        raw.get("InstanceId"), TAG_INSTANCE_ID)
            continue
        instances.append(instance_from_ec2(raw, now=clock()))
    return instances


def instance_from_ec2(raw: Mapping[str, Any], *, now: float, fallback_pool: str | None = None,
                      price: float | None = None, market: Market | None = None) -> Instance:
    """Our `Instance` facts from one EC2 instance description."""
    tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
    if price is None and TAG_PRICE in tags:
        try:
            price = float(tags[TAG_PRICE])
        except ValueError:
            price = None
    launched = raw.get("LaunchTime")
    launched_at = launched.timestamp() if isinstance(launched, datetime) else now
    lifecycle: Market = "spot" if raw.get("InstanceLifecycle") == "spot" else "on-demand"
    return Instance(
        instance_id=tags.get(TAG_INSTANCE_ID, raw["InstanceId"]),
        provider="aws",
        provider_instance_id=raw["InstanceId"],
        pool=tags.get(TAG_POOL, fallback_pool or ""),
        instance_type=raw.get("InstanceType", ""),
        zone=raw.get("Placement", {}).get("AvailabilityZone"),
        market=market or lifecycle,
        private_ip=raw.get("PrivateIpAddress"),
        launched_at=launched_at,
        price_per_hour=price,
        model_id=tags.get(TAG_MODEL),
        state=raw.get("State", {}).get("Name", "unknown"),
        details={"subnet_id": raw.get("SubnetId")},
    )

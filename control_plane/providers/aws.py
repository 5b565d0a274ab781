"""EC2 Spot capacity through aioboto3: one RunInstances per replica, over ranked capacity pools.

Why RunInstances per replica rather than one instant EC2 Fleet (CreateFleet Type=instant):

- Each instance carries its own identity at launch: our instance id is in its tags *and* in its
  user-data in the same atomic call. A fleet takes user-data from a launch template, so per-instance
  values would need a template (or version) per instance, created and deleted around each launch —
  one more thing that can leak.
- Spread is ours to decide. Interruptions of one type in one zone come together (FACTS: within three
  minutes in over 92% of cases), so each replica goes to the least used (type, zone) pool of the
  pool's replicas (see `placement.py`); a capacity-optimized fleet request would put every replica
  of a request in the one deepest pool.
- Fall-through is explicit and observable: a refused pool (InsufficientInstanceCapacity, ...) is
  recorded in `LaunchResult.attempts` and in the DemotionTracker, and the next pool is tried.
- moto applies RunInstances' MetadataOptions (IMDSv2 required) but not a launch template's, so the
  tests check what production does.

What we give up is AWS's capacity-pool depth signal ("capacity-optimized"): the type priority is
honoured exactly ("prioritized"), and recent capacity errors and interruptions demote a pool for a
while instead. Launch order per replica:

    spot:      every eligible (type, zone) slot, ranked by placement.order_slots
    on-demand: the same, if `on_demand_fallback` and every spot slot failed

Error codes and what they mean for the walk:

    InsufficientInstanceCapacity, InsufficientCapacity, Unsupported,    -> next slot (the pool is
    InsufficientFreeAddressesInSubnet, SpotMaxPriceTooLow                  dropped for this launch)
    MaxSpotInstanceCountExceeded, VcpuLimitExceeded, InstanceLimitExceeded -> next market (quota)
    throttling / timeouts / 5xx                                           -> same slot again (same
                                                                             ClientToken), then stop
    anything else (auth, AMI, parameters)                                 -> ProviderRejected

`max_price_per_hour` is enforced here against known prices and never sent as a Spot MaxPrice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aioboto3
from botocore.exceptions import ClientError

from control_plane.providers.aws_client import (
    TRANSIENT_CODES,
    AwsClients,
    classify,
    error_code,
    error_message,
)
from control_plane.providers.aws_config import AwsProviderConfig
from control_plane.providers.aws_inventory import TAG_PRICE, describe_managed, instance_from_ec2
from control_plane.providers.aws_prices import SpotPriceBook
from control_plane.providers.base import (
    TAG_CLUSTER,
    TAG_INSTANCE_ID,
    TAG_MANAGED,
    TAG_MODEL,
    TAG_POOL,
    CapacityError,
    CapacityProvider,
    Instance,
    InsufficientCapacity,
    LaunchAttempt,
    LaunchRequest,
    LaunchResult,
    Market,
    PriceCapExceeded,
    ProviderRejected,
    ProviderUnavailable,
)
from control_plane.providers.interruptions import DemotionTracker
from control_plane.providers.placement import Slot, eligible_slots, order_slots
from control_plane.providers.userdata import BootSpec, render
from fleet.secrets import new_id

log = logging.getLogger("flotilla.capacity.aws")

SLOT_ERRORS = frozenset({
    "InsufficientInstanceCapacity", "InsufficientCapacity", "Unsupported",
    "InsufficientFreeAddressesInSubnet", "SpotMaxPriceTooLow", "InsufficientHostCapacity",
})
CAPACITY_ERRORS = frozenset({"InsufficientInstanceCapacity", "InsufficientCapacity",
                             "InsufficientHostCapacity"})
MARKET_ERRORS = frozenset({"MaxSpotInstanceCountExceeded", "VcpuLimitExceeded",
                           "InstanceLimitExceeded"})
class AwsProvider(CapacityProvider, name="aws"):
    def __init__(
        self,
        config: AwsProviderConfig,
        *,
        session: aioboto3.Session | None = None,
        demotions: DemotionTracker | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.demotions = demotions or DemotionTracker()
        self._clock = clock
        self._aws = AwsClients(
            session=session, region=config.region, endpoint_url=config.endpoint_url,
            connect_timeout_s=config.connect_timeout_s, read_timeout_s=config.read_timeout_s,
            api_timeout_s=config.api_timeout_s)
        self._spot = SpotPriceBook(self._fetch_spot_prices, ttl_s=config.spot_price_ttl_s,
                                   clock=clock)
        self._zones: list[tuple[str, str]] | None = None
        self._ami: tuple[str, float] | None = None
        self._root_device: dict[str, str] = {}

    # launch ---------------------------------------------------------------------------------
    async def launch(self, request: LaunchRequest) -> LaunchResult:
        if request.count == 0:
            return LaunchResult(())
        types = request.instance_types or self.config.default_instance_types
        if not types:
            raise ProviderRejected(f"pool {request.pool}: no instance types to launch")
        zones = await self.zones(request.zones)
        image_id = await self.image_id()
        spot_prices = await self._spot_prices_or_unknown(types, request.max_price_per_hour)
        markets: list[list[Slot]] = []
        spot_slots, attempts = eligible_slots(types, zones, "spot", spot_prices,
                                              request.max_price_per_hour)
        markets.append(spot_slots)
        if request.on_demand_fallback:
            od_prices: dict[tuple[str, str | None], float | None] = {
                (t, z): self.config.on_demand_prices.get(t) for t in types for z, _ in zones}
            od_slots, skipped = eligible_slots(types, zones, "on-demand", od_prices,
                                               request.max_price_per_hour)
            markets.append(od_slots)
            attempts += skipped
        if not any(markets):
            raise PriceCapExceeded(
                f"pool {request.pool}: every instance type is priced above "
                f"${request.max_price_per_hour}/h or has no known price", attempts)

        walk = _Walk(markets, [(i.instance_type, i.zone) for i in request.existing], attempts)
        launched: list[Instance] = []
        for _ in range(request.count):
            try:
                instance = await self._launch_one(request, image_id, types, zones, walk)
            except CapacityError as exc:
                if not launched:
                    raise
                # Keep what started; the caller sees the shortfall and the reason.
                attempts.append(LaunchAttempt("-", None, "spot", type(exc).__name__, str(exc)))
                break
            if instance is None:
                break
            launched.append(instance)
            walk.existing.append((instance.instance_type, instance.zone))
        if not launched:
            raise InsufficientCapacity(
                f"pool {request.pool}: no capacity in any of {len(attempts)} tried pools "
                f"({', '.join(sorted({a.outcome for a in attempts}))})", attempts)
        return LaunchResult(tuple(launched), tuple(attempts))

    async def _launch_one(self, request: LaunchRequest, image_id: str, types: Sequence[str],
                          zones: Sequence[tuple[str, str]], walk: _Walk) -> Instance | None:
        instance_id = new_id("inst")
        user_data = render(BootSpec(
            instance_id=instance_id, control_plane_url=request.control_plane_url,
            model_id=request.model_id, engine=request.engine,
            agent_package=self.config.agent_package, engine_args=request.engine_args,
            tensor_parallel_size=request.tensor_parallel_size,
            gpu_memory_utilization=request.gpu_memory_utilization,
            vllm_image=self.config.vllm_image, tei_image=self.config.tei_image,
            hf_token_parameter=self.config.hf_token_parameter,
            drain_timeout_s=self.config.drain_timeout_s))
        now = self._clock()
        for market_slots in walk.markets:
            candidates = [s for s in market_slots if s not in walk.failed]
            ranked = order_slots(candidates, walk.existing, type_priority=types,
                                 zone_order=[z for z, _ in zones],
                                 penalty=lambda t, z: self.demotions.penalty(t, z, now))
            for slot in ranked:
                outcome = await self._try_slot(request, image_id, instance_id, user_data, slot,
                                               len(walk.attempts))
                if isinstance(outcome, Instance):
                    walk.attempts.append(LaunchAttempt(slot.instance_type, slot.zone,
                                                       slot.market, "launched"))
                    return outcome
                code, message = outcome
                walk.attempts.append(LaunchAttempt(slot.instance_type, slot.zone, slot.market,
                                                   code, message))
                log.info("launch of %s on %s %s in %s refused: %s", request.pool, slot.market,
                         slot.instance_type, slot.zone, code)
                if code in MARKET_ERRORS:
                    walk.failed.update(market_slots)
                    break
                walk.failed.add(slot)
                if code in CAPACITY_ERRORS:
                    self.demotions.record_capacity_error(slot.instance_type, slot.zone,
                                                         self._clock(), code)
        return None

    async def _try_slot(self, request: LaunchRequest, image_id: str, instance_id: str,
                        user_data: str, slot: Slot, attempt_no: int) -> Instance | tuple[str, str]:
        params = self._run_params(request, image_id, instance_id, user_data, slot)
        # One token per (instance, slot): a retried call after a timeout is deduplicated by EC2.
        params["ClientToken"] = f"{instance_id}-{attempt_no}"
        for retry in range(self.config.launch_retries + 1):
            try:
                response = await self._aws.raw(lambda c: c.run_instances(**params), launch=True)
            except ClientError as exc:
                code = error_code(exc)
                if code in SLOT_ERRORS or code in MARKET_ERRORS:
                    return code, error_message(exc)
                if code not in TRANSIENT_CODES or retry == self.config.launch_retries:
                    raise classify(exc, f"RunInstances {slot.instance_type}") from exc
            except Exception as exc:
                error = classify(exc, f"RunInstances {slot.instance_type}")
                if not isinstance(error, ProviderUnavailable) or (
                        retry == self.config.launch_retries):
                    raise error from exc
            else:
                raw = response["Instances"][0]
                return instance_from_ec2(raw, now=self._clock(), fallback_pool=request.pool,
                                         price=slot.price_per_hour, market=slot.market)
            await asyncio.sleep(self.config.launch_retry_delay_s * (2 ** retry))
        raise ProviderUnavailable(f"RunInstances {slot.instance_type}: retries exhausted")

    def _run_params(self, request: LaunchRequest, image_id: str, instance_id: str,
                    user_data: str, slot: Slot) -> dict[str, Any]:
        tags = [
            {"Key": TAG_CLUSTER, "Value": self.config.cluster},
            {"Key": TAG_POOL, "Value": request.pool},
            {"Key": TAG_INSTANCE_ID, "Value": instance_id},
            {"Key": TAG_MANAGED, "Value": "true"},
            {"Key": TAG_MODEL, "Value": request.model_id[:255]},
            {"Key": "Name", "Value": f"flotilla-{request.pool}-{instance_id[-8:]}"},
        ]
        if slot.price_per_hour is not None:
            tags.append({"Key": TAG_PRICE, "Value": f"{slot.price_per_hour:.6f}"})
        params: dict[str, Any] = {
            "ImageId": image_id,
            "InstanceType": slot.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "SubnetId": slot.subnet_id,
            "UserData": user_data,
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled",
                                "HttpPutResponseHopLimit": 1},
            "InstanceInitiatedShutdownBehavior": "terminate",
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tags},
                                  {"ResourceType": "volume", "Tags": tags[:4]}],
        }
        if slot.market == "spot":
            # No MaxPrice: a bid does not cap spending and makes interruptions more likely.
            params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
                "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
        if self.config.security_group_ids:
            params["SecurityGroupIds"] = list(self.config.security_group_ids)
        if self.config.key_name:
            params["KeyName"] = self.config.key_name
        if self.config.instance_profile:
            key = "Arn" if self.config.instance_profile.startswith("arn:") else "Name"
            params["IamInstanceProfile"] = {key: self.config.instance_profile}
        if self.config.root_volume_gb:
            params["BlockDeviceMappings"] = [{
                "DeviceName": self._root_device[image_id],
                "Ebs": {"VolumeSize": self.config.root_volume_gb, "VolumeType": "gp3",
                        "DeleteOnTermination": True}}]
        return params

    # terminate and list -----------------------------------------------------------------------
    async def terminate(self, instance_ids: Sequence[str]) -> list[str]:
        found: list[Instance] = []
        ids = list(dict.fromkeys(instance_ids))
        for start in range(0, len(ids), 200):  # EC2 takes up to 200 values per filter
            found += await describe_managed(self._aws, self.config.cluster, [
                {"Name": f"tag:{TAG_INSTANCE_ID}", "Values": ids[start:start + 200]}],
                self._clock)
        live = [i for i in found if i.state != "shutting-down"]
        if live:
            ids = [i.provider_instance_id for i in live]
            await self._aws.call("TerminateInstances",
                                 lambda c: c.terminate_instances(InstanceIds=ids))
        return [i.instance_id for i in found]

    async def list_instances(self, pool: str | None = None) -> list[Instance]:
        filters = [{"Name": f"tag:{TAG_POOL}", "Values": [pool]}] if pool else []
        return await describe_managed(self._aws, self.config.cluster, filters, self._clock)

    # prices, zones, image ---------------------------------------------------------------------
    async def price(self, instance_type: str, *, market: Market = "spot",
                    zone: str | None = None) -> float | None:
        if market == "on-demand":
            return self.config.on_demand_prices.get(instance_type)
        prices = await self._spot.prices([instance_type])
        if zone is not None:
            return prices.get((instance_type, zone))
        zone_prices = [p for (t, _z), p in prices.items() if t == instance_type]
        return min(zone_prices) if zone_prices else None

    async def spot_prices(self, instance_types: Sequence[str]) -> dict[tuple[str, str | None],
                                                                        float]:
        return await self._spot.prices(instance_types)

    async def _spot_prices_or_unknown(self, types: Sequence[str], ceiling: float | None,
                                      ) -> dict[tuple[str, str | None], float]:
        try:
            return await self._spot.prices(types)
        except (ProviderRejected, ProviderUnavailable) as exc:
            if ceiling is not None:
                raise
            # Without a ceiling a price is only needed for cost accounting; launch anyway.
            log.warning("spot prices unavailable (%s); launching with unknown prices", exc)
            return {}

    async def _fetch_spot_prices(self, types: Sequence[str], start: datetime,
                                 ) -> list[dict[str, Any]]:
        async def fetch(client: Any) -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = []
            paginator = client.get_paginator("describe_spot_price_history")
            async for page in paginator.paginate(
                    InstanceTypes=list(types), StartTime=start,
                    ProductDescriptions=[self.config.product_description]):
                rows.extend(page.get("SpotPriceHistory", []))
            return rows

        return await self._aws.call("DescribeSpotPriceHistory", fetch)

    async def zones(self, restrict: Sequence[str] = ()) -> list[tuple[str, str]]:
        """(zone, subnet) pairs to launch into, in a stable order."""
        if self._zones is None:
            if self.config.subnet_ids:
                kwargs: dict[str, Any] = {"SubnetIds": list(self.config.subnet_ids)}
            else:
                kwargs = {"Filters": [{"Name": "default-for-az", "Values": ["true"]}]}
            response = await self._aws.call("DescribeSubnets",
                                            lambda c: c.describe_subnets(**kwargs))
            pairs = sorted((s["AvailabilityZone"], s["SubnetId"])
                           for s in response.get("Subnets", []))
            if not pairs:
                raise ProviderRejected("no subnets to launch into (no default VPC subnets; "
                                       "set subnet_ids)")
            self._zones = pairs
        pairs = [p for p in self._zones if not restrict or p[0] in restrict]
        if not pairs:
            raise ProviderRejected(f"none of the zones {list(restrict)} has a subnet")
        return pairs

    async def image_id(self) -> str:
        """The AMI: configured, or resolved through SSM (cached for `ami_ttl_s`)."""
        now = self._clock()
        image = self.config.ami_id
        if image is None:
            if self._ami is not None and now - self._ami[1] < self.config.ami_ttl_s:
                image = self._ami[0]
            else:
                name = self.config.ami_parameter
                response = await self._aws.call(
                    f"SSM GetParameter {name}", lambda c: c.get_parameter(Name=name),
                    service="ssm")
                image = str(response["Parameter"]["Value"])
                self._ami = (image, now)
        if self.config.root_volume_gb and image not in self._root_device:
            found = await self._aws.call("DescribeImages",
                                         lambda c: c.describe_images(ImageIds=[image]))
            images = found.get("Images", [])
            if not images:
                raise ProviderRejected(f"AMI {image} not found")
            self._root_device[image] = images[0].get("RootDeviceName", "/dev/sda1")
        return image

    async def aclose(self) -> None:
        await self._aws.aclose()


@dataclass
class _Walk:
    """State of one launch call: slots by market, what failed, where replicas went."""

    markets: list[list[Slot]]
    existing: list[tuple[str, str | None]]
    attempts: list[LaunchAttempt]
    failed: set[Slot] = field(default_factory=set)

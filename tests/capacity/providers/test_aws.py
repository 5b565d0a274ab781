"""The AWS provider against moto's EC2 server, with a fault proxy for refusals and prices."""

from __future__ import annotations

import base64
import collections
from typing import Any

import pytest

from control_plane.providers.base import (
    TAG_CLUSTER,
    TAG_INSTANCE_ID,
    TAG_MANAGED,
    TAG_POOL,
    CapacityProvider,
    Instance,
    InsufficientCapacity,
    LaunchRequest,
    PriceCapExceeded,
    ProviderRejected,
    ProviderUnavailable,
)
from control_plane.providers.interruptions import DEMOTED, DemotionTracker
from tests.capacity.conftest import fake_session
from tests.support.ec2_faults import Ec2FaultProxy, Refusal
from tests.support.moto_server import MotoServer
from tests.support.ports import free_port

TYPES = ("g6.2xlarge", "g6e.xlarge", "g5.2xlarge")


def request(**overrides: Any) -> LaunchRequest:
    values: dict[str, Any] = {
        "pool": "qwen14b", "model_id": "Qwen/Qwen2.5-14B-Instruct-AWQ", "engine": "vllm",
        "count": 1, "control_plane_url": "http://10.0.0.5:8003", "instance_types": TYPES}
    values.update(overrides)
    return LaunchRequest(**values)


async def describe(moto: MotoServer, provider_instance_id: str) -> dict[str, Any]:
    async with fake_session().client("ec2", endpoint_url=moto.url) as ec2:
        found = await ec2.describe_instances(InstanceIds=[provider_instance_id])
        return found["Reservations"][0]["Instances"][0]


async def user_data(moto: MotoServer, provider_instance_id: str) -> str:
    async with fake_session().client("ec2", endpoint_url=moto.url) as ec2:
        attr = await ec2.describe_instance_attribute(InstanceId=provider_instance_id,
                                                     Attribute="userData")
        return base64.b64decode(attr["UserData"]["Value"]).decode()


def test_aws_provider_is_registered_by_name() -> None:
    from control_plane.providers.aws import AwsProvider

    assert CapacityProvider.lookup("aws") is AwsProvider
    assert "aws" in CapacityProvider.registered()


async def test_launch_tags_the_instance_and_its_user_data_starts_engine_and_agent(
        make_aws_provider, moto_server: MotoServer, ec2_proxy: Ec2FaultProxy) -> None:
    provider = make_aws_provider()
    result = await provider.launch(request(engine_args=("--quantization", "awq"),
                                           gpu_memory_utilization=0.85))
    [instance] = result.instances
    raw = await describe(moto_server, instance.provider_instance_id)
    tags = {t["Key"]: t["Value"] for t in raw["Tags"]}
    assert tags[TAG_CLUSTER] == provider.config.cluster
    assert tags[TAG_POOL] == "qwen14b"
    assert tags[TAG_INSTANCE_ID] == instance.instance_id
    assert tags[TAG_MANAGED] == "true"
    assert raw["InstanceLifecycle"] == "spot" and instance.market == "spot"
    assert raw["MetadataOptions"]["HttpTokens"] == "required"
    assert instance.private_ip == raw["PrivateIpAddress"]
    assert instance.zone == raw["Placement"]["AvailabilityZone"]

    script = await user_data(moto_server, instance.provider_instance_id)
    for line in (f"INSTANCE_ID={instance.instance_id}", "CONTROL_PLANE_URL=http://10.0.0.5:8003",
                 "MODEL_ID=Qwen/Qwen2.5-14B-Instruct-AWQ", "ENGINE=vllm",
                 "GPU_MEMORY_UTILIZATION=0.85",
                 "WORKER_AUTH_TOKEN_FILE=/var/lib/flotilla/worker-token",
                 "ADVERTISE_URL=http://$PRIVATE_IP:8000",
                 "PROVIDER_INSTANCE_ID=$PROVIDER_INSTANCE_ID"):
        assert line in script.splitlines(), line
    assert "X-aws-ec2-metadata-token" in script  # IMDSv2 only
    assert "--quantization awq" in script
    assert "WORKER_AUTH_TOKEN=" not in script  # no secret in user-data

    [sent] = ec2_proxy.actions("RunInstances")
    assert sent["InstanceMarketOptions.MarketType"] == "spot"
    assert not any("MaxPrice" in key for key in sent)  # the cap is never a Spot bid


async def test_replicas_spread_over_zones_then_types(make_aws_provider) -> None:
    provider = make_aws_provider()
    zones = await provider.zones()
    two_subnets = tuple(subnet for _zone, subnet in zones[:2])
    provider = make_aws_provider(subnet_ids=two_subnets)
    result = await provider.launch(request(count=4, instance_types=TYPES[:2]))
    pools = collections.Counter((i.instance_type, i.zone) for i in result.instances)
    assert len(pools) == 4  # every (type, zone) pool holds one replica
    assert {i.zone for i in result.instances} == {zones[0][0], zones[1][0]}

    # One more replica, knowing the four: it goes to the least used zone of the first type.
    more = await provider.launch(request(count=1, instance_types=TYPES[:2],
                                         existing=result.instances[:3]))
    [extra] = more.instances
    missing = ({(t, z) for t in TYPES[:2] for z in (zones[0][0], zones[1][0])}
               - {(i.instance_type, i.zone) for i in result.instances[:3]})
    assert (extra.instance_type, extra.zone) in missing


async def test_refused_type_falls_through_to_the_next_and_is_demoted(
        make_aws_provider, ec2_proxy: Ec2FaultProxy) -> None:
    ec2_proxy.refuse["g6.2xlarge"] = Refusal("InsufficientInstanceCapacity")
    tracker = DemotionTracker()
    provider = make_aws_provider(demotions=tracker, clock=lambda: 1000.0)
    result = await provider.launch(request())
    [instance] = result.instances
    assert instance.instance_type == "g6e.xlarge"
    refused = [a for a in result.attempts if a.outcome == "InsufficientInstanceCapacity"]
    zones = [z for z, _ in await provider.zones()]
    assert {a.zone for a in refused} == set(zones)  # tried in every zone before moving on
    assert all(a.instance_type == "g6.2xlarge" for a in refused)
    assert tracker.penalty("g6.2xlarge", zones[0], now=1000.0) == DEMOTED

    # While demoted, the next launch starts with the next type directly.
    ec2_proxy.refuse.clear()
    before = len(ec2_proxy.actions("RunInstances"))
    again = await provider.launch(request())
    assert again.instances[0].instance_type == "g6e.xlarge"
    assert len(ec2_proxy.actions("RunInstances")) == before + 1


async def test_on_demand_fallback_after_every_spot_type_is_refused(
        make_aws_provider, moto_server: MotoServer, ec2_proxy: Ec2FaultProxy) -> None:
    for instance_type in TYPES:
        ec2_proxy.refuse[instance_type] = Refusal("InsufficientInstanceCapacity", market="spot")
    provider = make_aws_provider(subnet_ids=(), on_demand_prices={"g6.2xlarge": 0.98})
    with pytest.raises(InsufficientCapacity) as refused:
        await provider.launch(request())
    assert {a.instance_type for a in refused.value.attempts} == set(TYPES)
    assert not refused.value.attempts[0].launched

    result = await provider.launch(request(on_demand_fallback=True))
    [instance] = result.instances
    assert instance.market == "on-demand" and instance.instance_type == "g6.2xlarge"
    assert instance.price_per_hour == 0.98
    raw = await describe(moto_server, instance.provider_instance_id)
    assert raw.get("InstanceLifecycle") != "spot"
    assert "InstanceMarketOptions.MarketType" not in ec2_proxy.actions("RunInstances")[-1]


async def test_spot_quota_error_skips_the_rest_of_the_spot_market(
        make_aws_provider, ec2_proxy: Ec2FaultProxy) -> None:
    ec2_proxy.refuse["g6.2xlarge"] = Refusal("MaxSpotInstanceCountExceeded", market="spot")
    provider = make_aws_provider()
    result = await provider.launch(request(on_demand_fallback=True))
    spot_attempts = [a for a in result.attempts if a.market == "spot"]
    assert [a.outcome for a in spot_attempts] == ["MaxSpotInstanceCountExceeded"]
    assert result.instances[0].market == "on-demand"


async def test_price_ceiling_skips_types_priced_above_it(
        make_aws_provider, ec2_proxy: Ec2FaultProxy) -> None:
    ec2_proxy.spot_prices.update({"g6.2xlarge": 1.50, "g6e.xlarge": 1.20, "g5.2xlarge": 0.61})
    provider = make_aws_provider()
    result = await provider.launch(request(max_price_per_hour=1.0))
    [instance] = result.instances
    assert instance.instance_type == "g5.2xlarge"
    assert instance.price_per_hour == pytest.approx(0.61)
    skipped = {a.instance_type for a in result.attempts if a.outcome == "PriceAboveCap"}
    assert skipped == {"g6.2xlarge", "g6e.xlarge"}

    sent_before = len(ec2_proxy.actions("RunInstances"))
    with pytest.raises(PriceCapExceeded):
        await provider.launch(request(max_price_per_hour=0.5))
    assert len(ec2_proxy.actions("RunInstances")) == sent_before  # nothing was tried


async def test_spot_prices_are_looked_up_once_per_ttl(
        make_aws_provider, ec2_proxy: Ec2FaultProxy) -> None:
    ec2_proxy.spot_prices.update({"g5.2xlarge": 0.61})
    now = [5000.0]
    provider = make_aws_provider(clock=lambda: now[0], spot_price_ttl_s=300.0)
    assert await provider.price("g5.2xlarge") == pytest.approx(0.61)
    assert await provider.price("g5.2xlarge", zone="us-east-1b") == pytest.approx(0.61)
    assert len(ec2_proxy.actions("DescribeSpotPriceHistory")) == 1
    ec2_proxy.spot_prices["g5.2xlarge"] = 0.70
    now[0] += 301
    assert await provider.price("g5.2xlarge") == pytest.approx(0.70)
    assert len(ec2_proxy.actions("DescribeSpotPriceHistory")) == 2
    assert await provider.price("g5.2xlarge", market="on-demand") is None  # not configured


async def test_list_by_tag_sees_only_this_cluster_and_pool(make_aws_provider) -> None:
    ours = make_aws_provider()
    theirs = make_aws_provider(cluster="someone-else")
    a = (await ours.launch(request(pool="alpha"))).instances[0]
    b = (await ours.launch(request(pool="beta"))).instances[0]
    foreign = (await theirs.launch(request(pool="alpha"))).instances[0]
    listed = await ours.list_instances()
    assert {i.instance_id for i in listed} == {a.instance_id, b.instance_id}
    assert [i.instance_id for i in await ours.list_instances("alpha")] == [a.instance_id]
    assert foreign.instance_id not in {i.instance_id for i in listed}
    # Terminating by id never reaches another cluster's instance.
    assert await ours.terminate([foreign.instance_id]) == []
    assert [i.instance_id for i in await theirs.list_instances()] == [foreign.instance_id]


async def test_terminate_releases_the_instance_and_is_idempotent(
        make_aws_provider, moto_server: MotoServer) -> None:
    provider = make_aws_provider()
    result = await provider.launch(request(count=2))
    first, second = result.instances
    assert await provider.terminate([first.instance_id]) == [first.instance_id]
    assert [i.instance_id for i in await provider.list_instances()] == [second.instance_id]
    raw = await describe(moto_server, first.provider_instance_id)
    assert raw["State"]["Name"] in ("shutting-down", "terminated")
    assert await provider.terminate([first.instance_id]) == []
    assert await provider.terminate([]) == []


async def test_a_new_provider_object_lists_what_an_earlier_one_launched(
        make_aws_provider) -> None:
    launched = (await make_aws_provider().launch(request(count=2))).instances
    restarted = make_aws_provider()
    listed = {i.instance_id: i for i in await restarted.list_instances()}
    assert set(listed) == {i.instance_id for i in launched}
    for original in launched:
        seen: Instance = listed[original.instance_id]
        assert (seen.provider_instance_id, seen.pool, seen.instance_type, seen.zone,
                seen.private_ip, seen.market) == (
            original.provider_instance_id, original.pool, original.instance_type,
            original.zone, original.private_ip, original.market)
        assert seen.price_per_hour == pytest.approx(original.price_per_hour)


async def test_missing_ami_parameter_is_a_configuration_error(make_aws_provider) -> None:
    provider = make_aws_provider(ami_parameter="/flotilla/test/does-not-exist")
    with pytest.raises(ProviderRejected, match="ParameterNotFound"):
        await provider.launch(request())


async def test_configured_ami_skips_ssm_and_sets_the_root_volume(
        make_aws_provider, moto_images: list[str], ec2_proxy: Ec2FaultProxy) -> None:
    image_id = moto_images[1]
    provider = make_aws_provider(ami_id=image_id, ami_parameter="/not/used", root_volume_gb=200)
    [instance] = (await provider.launch(request())).instances
    sent = ec2_proxy.actions("RunInstances")[-1]
    assert sent["ImageId"] == image_id
    assert sent["BlockDeviceMapping.1.Ebs.VolumeSize"] == "200"
    assert instance.instance_type == TYPES[0]


async def test_unreachable_endpoint_is_provider_unavailable(make_aws_provider) -> None:
    provider = make_aws_provider(endpoint_url=f"http://127.0.0.1:{free_port()}",
                                 connect_timeout_s=1.0, api_timeout_s=10.0)
    with pytest.raises(ProviderUnavailable):
        await provider.list_instances()

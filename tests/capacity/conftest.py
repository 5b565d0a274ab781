"""Fixtures for the capacity libraries: moto's server, the EC2 fault proxy, provider factories."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aioboto3
import boto3
import pytest

from control_plane.providers.aws import AwsProvider, AwsProviderConfig
from control_plane.providers.interruptions import DemotionTracker
from tests.support.ec2_faults import Ec2FaultProxy
from tests.support.moto_server import MotoServer

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log").start()
    yield server
    server.stop()


def fake_session() -> aioboto3.Session:
    """Credentials and region for moto, given to the session only: the environment is untouched."""
    return aioboto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                            region_name=REGION)


@pytest.fixture
async def ec2_proxy(moto_server: MotoServer) -> AsyncIterator[Ec2FaultProxy]:
    async with Ec2FaultProxy(moto_server.url).running() as proxy:
        yield proxy


@pytest.fixture(scope="session")
def moto_images(moto_server: MotoServer) -> list[str]:
    """Two of moto's AMI ids (listing them is slow in moto: done once, before any event loop)."""
    ec2 = boto3.client("ec2", endpoint_url=moto_server.url, region_name=REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    images = ec2.describe_images(Owners=["amazon"])["Images"]
    return [images[0]["ImageId"], images[1]["ImageId"]]


@pytest.fixture(scope="session")
def ami_parameter(moto_server: MotoServer, moto_images: list[str]) -> str:
    """An SSM parameter naming one of moto's AMIs, as the DLAMI public parameter would."""
    name = f"/flotilla/test/{uuid.uuid4().hex[:8]}/ami-id"
    ssm = boto3.client("ssm", endpoint_url=moto_server.url, region_name=REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    ssm.put_parameter(Name=name, Value=moto_images[0], Type="String")
    return name


@pytest.fixture
async def make_aws_provider(
    ec2_proxy: Ec2FaultProxy, ami_parameter: str
) -> AsyncIterator[Callable[..., AwsProvider]]:
    """Providers talking to moto through the fault proxy, each closed at teardown.

    Every test gets its own cluster tag, so tests sharing the session's moto never see each
    other's instances.
    """
    cluster = f"test-{uuid.uuid4().hex[:8]}"
    made: list[AwsProvider] = []

    def make(*, clock: Callable[[], float] | None = None,
             demotions: DemotionTracker | None = None, **overrides: Any) -> AwsProvider:
        values: dict[str, Any] = {
            "cluster": cluster, "agent_package": "flotilla==0.1.0",
            "endpoint_url": ec2_proxy.url, "ami_parameter": ami_parameter,
            "api_timeout_s": 30.0, "launch_retry_delay_s": 0.05}
        values.update(overrides)
        kwargs: dict[str, Any] = {"session": fake_session(), "demotions": demotions}
        if clock is not None:
            kwargs["clock"] = clock
        provider = AwsProvider(AwsProviderConfig(**values), **kwargs)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "local-provider"
    path.mkdir()
    return path

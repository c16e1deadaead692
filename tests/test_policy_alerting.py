"""The policy pack's `alerts-reach-a-person`: in prod, where Prometheus runs, an Alertmanager
configuration is applied that sends a critical alert to a receiver that notifies someone. Judged from
what is declared (the bundles the apply commands ship), never from the settings."""

import copy

import pytest
import yaml

from carecircle.audit.policy_check import check, load_policies
from carecircle.offline import evaluate_stack
from carecircle.rendering import tar_bundle
from helpers import bundle_files

pack = load_policies()
RULE = "alerts-reach-a-person"


@pytest.fixture(scope="module")
def prod():
    return evaluate_stack("prod")


def fired(resources):
    return [v.message for v in check(resources) if v.policy == RULE]


def with_alertmanager_config(evaluation, change):
    """The resources with every shipped alertmanager.yml changed by `change(config)`."""
    resources = copy.deepcopy(evaluation.resources)
    for resource in resources:
        if resource.type == "command:local:Command" and "alertmanager" in resource.name:
            config = yaml.safe_load(bundle_files(resource.inputs["stdin"])["alertmanager.yml"])
            change(config)
            resource.inputs["stdin"] = tar_bundle({"alertmanager.yml": yaml.safe_dump(config)})
    return resources


def test_prod_as_committed_pages_someone(prod):
    assert fired(prod.resources) == []


def test_prometheus_without_any_alertmanager_configuration(prod):
    resources = [r for r in prod.resources if "alertmanager" not in r.name]
    assert fired(resources) == ["carecircle-prod-prometheus-1, carecircle-prod-prometheus-2: Prometheus runs in prod but no "
                                "Alertmanager configuration is applied: its alerts reach no one"]


def test_critical_alerts_routed_to_warnings_only_reach_no_one(prod):
    def warnings_only(config):
        for route in config["route"]["routes"][1:]:
            route["matchers"] = ['severity="warning"']
    messages = fired(with_alertmanager_config(prod, warnings_only))
    assert len(messages) == 2 and all("a critical alert reaches no receiver that notifies anyone" in m for m in messages)


def test_a_receiver_without_any_integration_notifies_no_one(prod):
    def emptied(config):
        config["receivers"] = [{"name": r["name"]} if r["name"] in ("slack", "pagerduty") else r for r in config["receivers"]]
    assert len(fired(with_alertmanager_config(prod, emptied))) == 2


def test_staging_and_dev_are_not_held_to_it():
    staging = evaluate_stack("staging", overrides={"carecircle:alertSlackWebhookUrl": None, "carecircle:alertDeadMansSwitchUrl": None})
    assert fired(staging.resources) == []


@pytest.mark.parametrize("labels, expected", [
    ({"alertname": "Watchdog", "severity": "none"}, ["dead-mans-switch"]),
    ({"alertname": "HighErrorRate", "severity": "critical"}, ["slack", "pagerduty"]),
    ({"alertname": "SlowResponses", "severity": "warning"}, ["slack"]),
    ({"alertname": "Something", "severity": "info"}, ["unrouted"]),
])
def test_routes_are_walked_as_alertmanager_walks_them(prod, labels, expected):
    command = next(r for r in prod.resources if r.name == "monitoring-alertmanager-1-config")
    config = yaml.safe_load(bundle_files(command.inputs["stdin"])["alertmanager.yml"])
    assert pack.route_receivers(config["route"], labels) == expected


def test_matchers_and_legacy_match_forms():
    route = {"receiver": "root", "routes": [
        {"receiver": "a", "match": {"team": "api"}, "routes": [{"receiver": "a-critical", "matchers": ["severity=~\"crit.*\""]}]},
        {"receiver": "b", "match_re": {"team": "web|mobile"}, "continue": True},
        {"receiver": "c", "matchers": ['team!="api"']},
    ]}
    assert pack.route_receivers(route, {"team": "api", "severity": "critical"}) == ["a-critical"]
    assert pack.route_receivers(route, {"team": "api", "severity": "warning"}) == ["a"]  # no child matched: the route keeps it
    assert pack.route_receivers(route, {"team": "web"}) == ["b", "c"]  # continue
    assert pack.route_receivers(route, {"team": "api-gateway"}) == ["c"]  # anchored regular expressions

"""The alerting keys refuse what would leave alerts undelivered or leak a receiver's credential: one clear
message naming the key, the stack and the fix, nothing declared, and the secret never echoed."""

import pytest
from test_config_errors import config_error, problem

from carecircle.offline import evaluate_stack

SLACK = "https://hooks.slack.com/services/T0000/B0000/secret-part-of-the-url"


def test_prod_sends_critical_alerts_to_a_person_and_pings_a_dead_mans_switch():
    error = config_error("prod", {"carecircle:alertPagerdutyRoutingKey": None, "carecircle:alertSlackWebhookUrl": None,
                                  "carecircle:alertDeadMansSwitchUrl": None})
    found = problem(error, "carecircle:alertPagerdutyRoutingKey")
    assert "prod sends critical alerts to a person" in found.message
    assert found.fix.startswith("pulumi config set --secret carecircle:alertPagerdutyRoutingKey")
    assert "the Watchdog alert pings" in problem(error, "carecircle:alertDeadMansSwitchUrl").message
    # Slack taking warnings only is no page either.
    error = config_error("prod", {"carecircle:alertPagerdutyRoutingKey": None, "carecircle:alertSlackSeverities": ["warning"]})
    problem(error, "carecircle:alertPagerdutyRoutingKey")
    evaluate_stack("prod", overrides={"carecircle:alertPagerdutyRoutingKey": None})  # Slack takes critical too
    evaluate_stack("staging", overrides={"carecircle:alertSlackWebhookUrl": None, "carecircle:alertDeadMansSwitchUrl": None})


def test_receiver_urls_are_https_in_staging_and_prod_and_never_echoed():
    plain = "http://oncall.internal.example/hook/token-1234567890"
    error = config_error("staging", secrets={"carecircle:alertWebhookUrl": plain, "carecircle:alertDeadMansSwitchUrl": plain})
    for key in ("carecircle:alertWebhookUrl", "carecircle:alertDeadMansSwitchUrl"):
        assert "https only" in problem(error, key).message
    assert "token-1234567890" not in str(error)
    assert "https only" in problem(config_error("prod", {"carecircle:alertPagerdutyUrl": "http://events.pagerduty.com/v2/enqueue"}),
                                   "carecircle:alertPagerdutyUrl").message
    evaluate_stack("dev", overrides={"carecircle:monitoringEnabled": True}, secrets={"carecircle:alertWebhookUrl": plain})


@pytest.mark.parametrize("key, value, words", [
    ("carecircle:alertSlackWebhookUrl", "http://hooks.slack.com/services/x", "Slack incoming webhook"),
    ("carecircle:alertPagerdutyRoutingKey", "too-short", "32 letters and digits"),
    ("carecircle:alertWebhookUrl", "ftp://example.com/hook", "webhook's URL"),
    ("carecircle:alertEmailPassword", "with space", "without spaces"),
])
def test_each_secret_is_checked_by_its_kind_without_echoing_it(key, value, words):
    error = config_error("dev", secrets={key: value})
    assert words in problem(error, key).message and value not in str(error)


def test_e_mail_needs_its_address_sender_and_server_and_both_credentials():
    error = config_error("dev", {"carecircle:alertEmailTo": "oncall@carecircle.example"})
    for key in ("carecircle:alertEmailFrom", "carecircle:alertEmailSmarthost"):
        assert "is required to send alerts by e-mail" in problem(error, key).message
    error = config_error("dev", {"carecircle:alertEmailTo": "oncall@carecircle.example", "carecircle:alertEmailFrom": "a@carecircle.example",
                                 "carecircle:alertEmailSmarthost": "smtp.example.com:587", "carecircle:alertEmailUsername": "alerts"})
    assert "needs both" in problem(error, "carecircle:alertEmailPassword").message
    for key, value in (("carecircle:alertEmailTo", "not an address"), ("carecircle:alertEmailSmarthost", "smtp.example.com"),
                       ("carecircle:alertEmailSmarthost", "smtp.example.com:70000")):
        problem(config_error("dev", {key: value}), key)


@pytest.mark.parametrize("value, path, words", [
    ([], "", "at least one severity"), (["critical", "critical"], "", "names a severity twice"), (["page"], "[0]", "'critical' or 'warning'"),
])
def test_severities_are_a_set_of_known_ones(value, path, words):
    found = problem(config_error("dev", {"carecircle:alertSlackSeverities": value}), "carecircle:alertSlackSeverities", path)
    assert words in found.message


def test_the_rate_window_holds_several_scrapes():
    found = problem(config_error("staging", {"carecircle:scrapeInterval": "1m", "carecircle:alertRateWindow": "2m"}),
                    "carecircle:alertRateWindow")
    assert "at least 4 scrapes" in found.message and found.fix == "pulumi config set carecircle:alertRateWindow 4m --stack staging"
    evaluate_stack("staging", overrides={"carecircle:scrapeInterval": "1s", "carecircle:alertRateWindow": "4s"})


@pytest.mark.parametrize("key, value, path", [("carecircle:alertGroupWait", "0s", ""), ("carecircle:alertRepeatInterval", "4 hours", ""),
                                              ("carecircle:alertGroupBy", ["alert-name"], "[0]"), ("carecircle:alertFor", "5d", "")])
def test_durations_and_label_names_in_the_form_alertmanager_and_prometheus_read(key, value, path):
    problem(config_error("dev", {key: value}), key, path)


def test_with_several_alertmanagers_the_group_interval_outlasts_their_turns():
    """Two Alertmanagers: the second decides 15 s after each check; a check more often than that can notify a
    resolved alert as firing again (measured on the swarm: tests/swarm/test_alerting_on_swarm.py)."""
    found = problem(config_error("prod", {"carecircle:alertGroupInterval": "15s"}), "carecircle:alertGroupInterval")
    assert "must be longer than 15s with 2 Alertmanagers" in found.message and found.fix.endswith("alertGroupInterval 20s --stack prod")
    evaluate_stack("prod", overrides={"carecircle:alertGroupInterval": "16s"})
    evaluate_stack("staging", overrides={"carecircle:alertGroupInterval": "1s"})  # one Alertmanager: no turns

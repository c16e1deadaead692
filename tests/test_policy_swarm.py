"""The policy pack on Swarm services: the committed swarm stacks pass, and each counter-example fires
exactly the rule it breaks. A service is judged by what it is (its mode, replicas, update policy,
environment, task), with the environment from the stack name in its URN; its labels never matter."""

from __future__ import annotations

import base64
import copy

import pytest

from carecircle.audit.policy_check import check, load_policies

pack = load_policies()
SERVICE = "docker:index/service:Service"
SECRET = "docker:index/secret:Secret"
ROLE = "com.carecircle.role"
STRONG = "Zq8vN3xR7tK2mW9pL4hB6yD1"  # long and random-looking: never "weak" to no-plaintext-secrets


def fired(resources, config=None):
    return {v.policy for v in check(resources, config)}


def changed(evaluation_or_resources, name, change, stack=None):
    """The resources with the Service (or Secret) `name` changed in place by `change(inputs)`, and, with
    `stack`, its URN naming that stack instead (the engine names the stack in each URN; the other
    resources, e.g. prod's public gateways, stay where they are so that only this one is judged anew)."""
    resources = copy.deepcopy(getattr(evaluation_or_resources, "resources", evaluation_or_resources))
    matches = [r for r in resources if r.name == name and r.type in (SERVICE, SECRET)]
    assert len(matches) == 1, f"no single service {name}"
    change(matches[0].inputs)
    if stack is not None:
        old = pack.stack_of(matches[0].urn)
        matches[0].urn = matches[0].urn.replace(f"urn:pulumi:{old}::", f"urn:pulumi:{stack}::", 1)
    return resources


def task(inputs):
    return inputs["taskSpec"]


def spec(inputs):
    return inputs["taskSpec"]["containerSpec"]


def env_with(**values):
    return lambda inputs: spec(inputs)["env"].update(values)


def relabelled(inputs):
    """Labels that lie: the service says it is a one-off job, in dev (labels are never an exemption)."""
    inputs["labels"] = [{"label": ROLE, "value": "one-off-job"}, {"label": "com.carecircle.environment", "value": "dev"},
                        {"label": "com.carecircle.stack", "value": "dev"}]


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_committed_swarm_stacks_pass_every_rule(stacks, stack):
    assert check(stacks[stack].resources) == []


def test_the_rules_judge_every_service(stacks):
    """Two services per stack, each seen by every service rule (a rule that skipped all would pass)."""
    services = [r for r in stacks["prod"].resources if r.type == SERVICE]
    assert sorted(r.name for r in services) == ["carecircle-prod-api-blue", "carecircle-prod-workers"]


# --- swarm-replicas-spread ------------------------------------------------------------------------------

@pytest.mark.parametrize("service", ["carecircle-prod-api-blue", "carecircle-prod-workers"])
@pytest.mark.parametrize("limit", [0, 3, 5])
def test_spread_fires_when_one_node_can_hold_every_replica(stacks, service, limit):
    def no_spread(inputs):
        if limit:
            task(inputs)["placement"]["maxReplicas"] = float(limit)
        else:
            del task(inputs)["placement"]["maxReplicas"]  # unset: Swarm's 0, no limit

    assert fired(changed(stacks["prod"], service, no_spread)) == {"swarm-replicas-spread"}


def test_spread_holds_below_the_replicas_and_only_where_the_settings_require_it(stacks):
    one_per_node = lambda inputs: task(inputs)["placement"].update(maxReplicas=1.0)  # noqa: E731
    assert fired(changed(stacks["prod"], "carecircle-prod-api-blue", one_per_node)) == set()
    unlimited = lambda inputs: task(inputs)["placement"].update(maxReplicas=0.0)  # noqa: E731
    single = lambda inputs: (unlimited(inputs), inputs["mode"]["replicated"].update(replicas=1.0))  # noqa: E731
    assert fired(changed(stacks["prod"], "carecircle-prod-api-blue", single)) == set()  # one replica: nothing to spread
    glob = lambda inputs: (unlimited(inputs), inputs.update(mode={"global": True}))  # noqa: E731
    assert fired(changed(stacks["prod"], "carecircle-prod-api-blue", glob)) == set()  # one task per node by definition
    # staging may be one node (settings/swarm.py requires the spread in prod only): its committed 0 passes
    assert stacks["staging"].get(SERVICE, "carecircle-staging-api-blue").inputs["taskSpec"]["placement"]["maxReplicas"] == 0
    # ...and the pack's config can require it elsewhere too
    assert fired(stacks["staging"].resources, {"swarm-replicas-spread": {"spreadRequiredIn": ["staging", "prod"]}}) == {"swarm-replicas-spread"}


@pytest.mark.parametrize("stack, fires", [("prod-eu", True), ("qa", True), ("staging-2", False), ("dev-alice", False)])
def test_spread_follows_the_stack_name_not_the_labels(stacks, stack, fires):
    def lying_and_unlimited(inputs):
        relabelled(inputs)
        task(inputs)["placement"]["maxReplicas"] = 0.0

    resources = changed(stacks["prod"], "carecircle-prod-api-blue", lying_and_unlimited, stack=stack)
    assert ("swarm-replicas-spread" in fired(resources)) == fires


# --- swarm-rollback-on-failure ---------------------------------------------------------------------------

@pytest.mark.parametrize("update", [
    {"failureAction": "pause"},
    {"failureAction": "continue"},
    {"failureAction": None},  # unset: Swarm pauses
    {"order": "stop-first"},
    {"order": None},  # unset: Swarm stops first
    {"maxFailureRatio": "1"},
    None,  # no update config: Swarm's defaults, stop-first and pause
], ids=["pause", "continue", "failure-unset", "stop-first", "order-unset", "ratio-1", "unset"])
@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_rollback_on_failure_fires_on_any_weaker_update_policy(stacks, stack, update):
    def weaker(inputs):
        if update is None:
            del inputs["updateConfig"]
            return
        for key, value in update.items():
            if value is None:
                del inputs["updateConfig"][key]
            else:
                inputs["updateConfig"][key] = value

    resources = changed(stacks[stack], f"carecircle-{stack}-workers", weaker)
    assert fired(resources) == {"swarm-rollback-on-failure"}
    messages = [v.message for v in check(resources)]
    assert all(m.startswith("carecircle-" + stack + "-workers") for m in messages)


def test_rollback_on_failure_is_not_required_in_dev_whatever_the_labels(stacks):
    def lying_stop_first(inputs):
        relabelled(inputs)
        inputs["updateConfig"]["order"] = "stop-first"

    assert fired(changed(stacks["prod"], "carecircle-prod-api-blue", lying_stop_first, stack="dev-alice")) == set()
    assert fired(changed(stacks["prod"], "carecircle-prod-api-blue", lying_stop_first)) == {"swarm-rollback-on-failure"}


# --- swarm-no-env-secrets ---------------------------------------------------------------------------------

@pytest.mark.parametrize("variable", [
    {"DATABASE_URL": f"postgresql://carecircle:{STRONG}@ep-x.neon.tech/carecircle?sslmode=require"},
    {"LEGACY_REDIS": f"rediss://default:{STRONG}@eu1.upstash.io:6379"},  # an innocent name: the URL gives it away
    {"STRIPE_API_KEY": STRONG},
    {"GITHUB_TOKEN": STRONG},
    {"SMTP_PASSWORD": STRONG},
    {"SENTRY_DSN": "https://0123456789abcdef@o1.ingest.sentry.io/1"},
    {"OTEL_EXPORTER_OTLP_HEADERS": f"x-honeycomb-team=abc,api-key={STRONG}"},
    {"UPSTREAM_AUTH": f"Bearer {STRONG}"},
    {"JWT_SECRET_FILE": f"postgresql://u:{STRONG}@db/x?sslmode=require"},  # the pointer form holds a path, nothing else
], ids=lambda v: next(iter(v)))
@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_a_credential_in_a_service_environment_is_refused(stacks, stack, variable):
    resources = changed(stacks[stack], f"carecircle-{stack}-api-blue", env_with(**variable))
    assert fired(resources) == {"swarm-no-env-secrets"}
    violation = next(v for v in check(resources) if v.policy == "swarm-no-env-secrets")
    assert next(iter(variable)) in violation.message and "_FILE" in violation.message


def test_a_swarm_secrets_value_copied_under_any_name_is_refused(stacks):
    """The value of a Swarm secret of the stack (here the generated JWT secret) in a plain variable."""
    secret = stacks["prod"].get(SECRET, "carecircle-prod-jwt-secret")
    value = base64.b64decode(secret.inputs["data"]).decode()
    resources = changed(stacks["prod"], "carecircle-prod-workers", env_with(FEATURE_SEED=value))
    assert fired(resources) == {"swarm-no-env-secrets"}
    assert "FEATURE_SEED holds the value of Swarm secret carecircle-prod-jwt-secret" in check(resources)[0].message


def test_the_file_pointer_form_and_plain_settings_pass(stacks):
    pointers = env_with(SMTP_PASSWORD_FILE="/run/secrets/smtp_password", STRIPE_API_KEY_FILE="/run/secrets/stripe",
                        DATABASE_HOST="ep-x.neon.tech", LOG_LEVEL="info", TOKEN_TTL_SECONDS_NOTE="")
    assert fired(changed(stacks["prod"], "carecircle-prod-api-blue", pointers)) == set()


def test_env_secrets_are_allowed_in_dev_only_by_the_stack_name(stacks):
    leak = env_with(DATABASE_URL=f"postgresql://carecircle:{STRONG}@db/carecircle?sslmode=require")
    assert fired(changed(stacks["prod"], "carecircle-prod-api-blue", leak, stack="dev-alice")) == set()
    assert fired(changed(stacks["prod"], "carecircle-prod-api-blue", lambda i: (relabelled(i), leak(i)))) == {"swarm-no-env-secrets"}


CONFIG = "docker:index/serviceConfig:ServiceConfig"


def with_env_file_line(evaluation, service: str, line: str):
    """The resources with `line` appended to the dotenv file (a Swarm config) that `service` reads."""
    resources = copy.deepcopy(evaluation.resources)
    config = next(r for r in resources if r.type == CONFIG and r.name == f"{service}-env")
    text = base64.b64decode(config.inputs["data"]).decode() + line + "\n"
    config.inputs["data"] = base64.b64encode(text.encode()).decode()
    return resources


@pytest.mark.parametrize("line", [f"DATABASE_URL='postgresql://carecircle:{STRONG}@ep-x.neon.tech/carecircle?sslmode=require'",
                                  f"STRIPE_API_KEY={STRONG}", f"LEGACY='rediss://default:{STRONG}@eu1.upstash.io:6379'"])
def test_a_credential_in_a_services_env_file_is_refused_like_one_in_its_environment(stacks, line):
    """A Swarm config is plain text to anyone who can `docker config inspect` it."""
    resources = with_env_file_line(stacks["prod"], "carecircle-prod-api-blue", line)
    assert fired(resources) == {"swarm-no-env-secrets"}
    [violation] = [v for v in check(resources) if v.policy == "swarm-no-env-secrets"]
    assert "(Swarm config)" in violation.message and line.split("=", 1)[0] in violation.message


def test_a_swarm_secrets_value_in_an_env_file_is_refused_and_pointers_pass(stacks):
    secret = stacks["prod"].get(SECRET, "carecircle-prod-jwt-secret")
    value = base64.b64decode(secret.inputs["data"]).decode()
    resources = with_env_file_line(stacks["prod"], "carecircle-prod-workers", f"FEATURE_SEED='{value}'")
    assert "FEATURE_SEED holds the value of Swarm secret carecircle-prod-jwt-secret" in check(resources)[0].message
    pointers = with_env_file_line(stacks["prod"], "carecircle-prod-workers", "SMTP_PASSWORD_FILE='/run/secrets/smtp_password'")
    assert fired(pointers) == set()


# --- service-operability -------------------------------------------------------------------------------

@pytest.mark.parametrize("break_it", [
    lambda i: spec(i).pop("healthcheck"),
    lambda i: spec(i)["healthcheck"].update(tests=["NONE"]),
    lambda i: task(i).pop("restartPolicy"),
    lambda i: task(i)["restartPolicy"].update(condition="none"),
    lambda i: task(i)["restartPolicy"].update(delay="0s"),
    lambda i: task(i)["restartPolicy"].pop("delay"),
    lambda i: task(i).pop("logDriver"),
    lambda i: task(i)["logDriver"].update(name="syslog"),
    lambda i: task(i)["logDriver"]["options"].pop("max-file"),
    lambda i: spec(i).pop("stopGracePeriod"),
    lambda i: spec(i).update(stopGracePeriod="0s"),
], ids=["no-healthcheck", "healthcheck-NONE", "no-restart-policy", "restart-none", "restart-delay-0s", "restart-delay-unset",
        "no-log-driver", "syslog", "no-max-file", "no-grace", "grace-0s"])
@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_service_operability(stacks, stack, break_it):
    assert fired(changed(stacks[stack], f"carecircle-{stack}-workers", break_it)) == {"service-operability"}


def test_operability_applies_in_every_environment(stacks):
    resources = changed(stacks["prod"], "carecircle-prod-workers", lambda i: spec(i).update(stopGracePeriod="0s"), stack="dev")
    assert fired(resources) == {"service-operability"}


@pytest.mark.parametrize("value, seconds", [("10s", 10), ("1m30s", 90), ("500ms", 0.5), ("0", 0), ("0s", 0), ("1h", 3600),
                                            ("", None), ("10", None), ("5 s", None), ("s", None), (None, None), (5, None)])
def test_go_durations(value, seconds):
    assert pack.duration_seconds(value) == seconds


# --- images-pinned and the container rules, on a service's task -----------------------------------------------

def test_service_images_are_pinned_as_container_images_are(stacks):
    tag_only = lambda i: spec(i).update(image="ghcr.io/carecircle/api:1.0.0")  # noqa: E731
    assert fired(changed(stacks["prod"], "carecircle-prod-api-blue", tag_only)) == {"images-pinned"}  # prod: by digest
    assert fired(changed(stacks["staging"], "carecircle-staging-api-blue", tag_only)) == set()
    latest = lambda i: spec(i).update(image="ghcr.io/carecircle/api:latest")  # noqa: E731
    assert fired(changed(stacks["staging"], "carecircle-staging-api-blue", latest)) == {"images-pinned"}
    untagged = lambda i: spec(i).update(image="ghcr.io/carecircle/api")  # noqa: E731
    assert fired(changed(stacks["staging"], "carecircle-staging-workers", untagged)) == {"images-pinned"}
    assert fired(changed(stacks["prod"], "carecircle-prod-api-blue", tag_only), {"images-pinned": {"digestRequiredIn": []}}) == set()


def test_a_service_running_a_data_store_may_not_publish_it(stacks):
    """Recognised by its image, whatever its labels; a Swarm port is published on every node."""
    def postgres_published(inputs):
        relabelled(inputs)
        spec(inputs)["image"] = "postgres:15@sha256:" + "a" * 64
        inputs["endpointSpec"] = {"mode": "vip", "ports": [{"targetPort": 5432.0, "publishedPort": 5432.0, "publishMode": "ingress"}]}

    violations = check(changed(stacks["prod"], "carecircle-prod-workers", postgres_published))
    assert {v.policy for v in violations} == {"no-public-data-ports", "tls-on"}  # and anything published in prod needs HTTPS
    assert any("a data service (image postgres:15" in v.message for v in violations)


def test_a_url_with_a_password_in_a_services_command_or_labels(stacks):
    in_args = lambda i: spec(i).update(args=[f"--db=postgresql://u:{STRONG}@db/x"])  # noqa: E731
    assert fired(changed(stacks["staging"], "carecircle-staging-workers", in_args)) == {"no-plaintext-secrets"}
    in_label = lambda i: i["labels"].append({"label": "db", "value": f"postgresql://u:{STRONG}@db/x"})  # noqa: E731
    assert fired(changed(stacks["prod"], "carecircle-prod-workers", in_label)) == {"no-plaintext-secrets"}


def test_a_preview_with_unknown_values_reports_nothing_false(stacks):
    """During a preview the engine hands the pack unknown values (pulumi-policy's proxy raises on reading
    one, and the engine then says the rule could not run yet): no rule may report a violation it
    cannot see."""
    from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

    from carecircle.audit.policy_check import policy_resource

    service = copy.deepcopy(stacks["prod"].get(SERVICE, "carecircle-prod-api-blue"))
    inputs = service.inputs
    inputs["taskSpec"]["placement"]["maxReplicas"] = UNKNOWN_STRING_VALUE
    inputs["updateConfig"]["order"] = UNKNOWN_STRING_VALUE
    inputs["taskSpec"]["containerSpec"]["stopGracePeriod"] = UNKNOWN_STRING_VALUE
    inputs["taskSpec"]["containerSpec"]["image"] = UNKNOWN_STRING_VALUE  # e.g. a docker.Image built in the same run
    resource = policy_resource(service)
    reported, skipped = [], []
    for policy in pack.POLICIES:
        if not isinstance(policy, ResourceValidationPolicy):
            continue
        config = {"digestRequiredIn": ["prod"], "spreadRequiredIn": ["prod"]}
        args = ResourceValidationArgs(resource.resource_type, unknown_checking_proxy(dict(resource.props)), resource.urn,
                                      resource.name, resource.opts, None, config)
        try:
            policy.validate(args, lambda message, urn=None, name=policy.name: reported.append((name, message)))
        except UnknownValueError:
            skipped.append(policy.name)
    assert reported == []
    assert "images-pinned" in skipped  # judged once the image is known, as for a container


def test_a_swarm_secrets_url_password_copied_under_an_innocent_name_is_refused(stacks):
    """Only the password of the database URL (not the URL): still the Swarm secret's value."""
    from urllib.parse import urlsplit

    secret = stacks["prod"].get(SECRET, "carecircle-prod-database-url")
    password = urlsplit(base64.b64decode(secret.inputs["data"]).decode()).password
    assert password and len(password) >= pack.MIN_MATCHED_SECRET
    resources = changed(stacks["prod"], "carecircle-prod-workers", env_with(FEATURE_FLAGS=f"beta,{password}"))
    assert fired(resources) == {"swarm-no-env-secrets"}
    assert "FEATURE_FLAGS holds the value of Swarm secret carecircle-prod-database-url" in check(resources)[0].message

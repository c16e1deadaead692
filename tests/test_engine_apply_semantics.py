"""Apply semantics of the applier on a real single-node Swarm: what is refused before anything changes,
updates, replacements (create-first, delete-first with dependents), converge waits, protection, deletion
order. What the provider reads back and how the next plan diffs against it: tests/test_engine_apply_readback.py."""

from __future__ import annotations

import time

import docker
import pulumi
import pulumi_command as command
import pulumi_docker as dk
import pulumi_random as random
import pytest

from carecircle.components.common import ContainerRuntime, apply_in_container
from carecircle.components.network import Networks, NetworksArgs
from carecircle.offline import Evaluation
from engine_apply import (
    CONTAINER,
    NETWORK,
    SERVICE,
    ContainerHealthError,
    ConvergeError,
    EngineApplier,
    EngineApplyError,
    EngineError,
    ProtectedResourceError,
    UnmappedInputError,
    UnsupportedResourceError,
)
from real_engine import IMAGE, NS, b64, evaluate, exec_out, overlay, single_task

# ---------------------------------------------------------------------------------------------
# Apply semantics
# ---------------------------------------------------------------------------------------------


def test_unknown_inputs_and_types_are_refused(engine, applier, uid):
    def program():
        net = overlay(f"{uid}-net")
        dk.Service("svc", name=f"{uid}-svc", task_spec=dk.ServiceTaskSpecArgs(
            container_spec=dk.ServiceTaskSpecContainerSpecArgs(image=IMAGE),
            networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(id=net.id)]))

    evaluation = evaluate(engine, program)
    evaluation.get(NETWORK, f"{uid}-net-net").inputs["scope"] = "swarm"
    with pytest.raises(UnmappedInputError) as raised:
        applier.apply(evaluation)
    assert (raised.value.resource, raised.value.type, raised.value.path) == (f"{uid}-net-net", NETWORK, "scope")

    evaluation = evaluate(engine, program)
    evaluation.get(SERVICE, "svc").inputs["taskSpec"]["containerSpec"]["ulimits"] = [{"name": "nofile"}]
    with pytest.raises(UnmappedInputError, match=r"svc.*taskSpec\.containerSpec\.ulimits"):
        applier.apply(evaluation)

    evaluation = evaluate(engine, program)
    evaluation.get(SERVICE, "svc").inputs["taskSpec"]["networksAdvanceds"][0]["gwPriority"] = 1.0
    with pytest.raises(UnmappedInputError, match=r"taskSpec\.networksAdvanceds\[0\]\.gwPriority"):
        applier.apply(evaluation)
    assert applier.history[-1].requests == []  # refused before touching the engine

    image = evaluate(engine, lambda: dk.Image("img", image_name="x:1", build=dk.DockerBuildArgs(context="."), skip_push=True))
    with pytest.raises(UnsupportedResourceError, match="docker:index/image:Image"):
        applier.apply(image)


def test_secret_and_config_references_need_their_names_on_the_engine(engine, applier, uid):
    """pulumi-docker documents secret_name/config_name as display-only and optional; swarmkit
    refuses a reference without it."""

    def program(kind: str):
        def declare():
            secret = dk.Secret("sec", name=f"{uid}-sec", data=b64("x"))
            config = dk.ServiceConfig("cfg", name=f"{uid}-cfg", data=b64("x"))
            refs = ({"secrets": [dk.ServiceTaskSpecContainerSpecSecretArgs(secret_id=secret.id, file_name="s")]} if kind == "secret"
                    else {"configs": [dk.ServiceTaskSpecContainerSpecConfigArgs(config_id=config.id, file_name="/c")]})
            dk.Service("svc", name=f"{uid}-svc", task_spec=dk.ServiceTaskSpecArgs(
                container_spec=dk.ServiceTaskSpecContainerSpecArgs(image=IMAGE, **refs)))
        return declare

    with pytest.raises(EngineError, match="malformed secret reference"):
        applier.apply(evaluate(engine, program("secret")))
    with pytest.raises(EngineError, match="malformed config reference"):
        applier.apply(evaluate(engine, program("config")))


def test_reapply_of_the_same_evaluation_changes_nothing(engine, applier, uid):
    def program():
        net = overlay(f"{uid}-net")
        password = random.RandomPassword("pw", length=16, special=False)  # nothing to create: its value is in the inputs
        secret = dk.Secret("sec", name=f"{uid}-sec", data=password.result.apply(b64))
        dk.Service("svc", name=f"{uid}-svc", task_spec=dk.ServiceTaskSpecArgs(
            container_spec=dk.ServiceTaskSpecContainerSpecArgs(
                image=IMAGE, secrets=[dk.ServiceTaskSpecContainerSpecSecretArgs(secret_id=secret.id, secret_name=secret.name,
                                                                                file_name="s")]),
            networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(id=net.id)]))

    first = applier.apply(evaluate(engine, program))
    assert sorted(first.created) == sorted([f"{uid}-net-net", "pw", "sec", "svc"])
    again = applier.apply(evaluate(engine, program))
    assert (again.created, again.updated, again.replaced, again.deleted) == ([], [], [], [])
    assert sorted(again.unchanged) == sorted(first.created)
    assert again.requests == []


def _rotating_program(uid: str, content: str, named: bool = False):
    def program():
        net = overlay(f"{uid}-net")
        secret = dk.Secret("app-secret", name=f"{uid}-secret" if named else None, data=b64(content))
        dk.Service("app", name=f"{uid}-app", task_spec=dk.ServiceTaskSpecArgs(
            container_spec=dk.ServiceTaskSpecContainerSpecArgs(
                image=IMAGE, commands=["sleep", "3600"],
                secrets=[dk.ServiceTaskSpecContainerSpecSecretArgs(secret_id=secret.id, secret_name=secret.name,
                                                                   file_name="token")]),
            networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(id=net.id)]),
            update_config=dk.ServiceUpdateConfigArgs(order="start-first", monitor="1s"),
            converge_config=dk.ServiceConvergeConfigArgs(delay="200ms", timeout="60s"))
    return program


def test_an_autonamed_secret_rotates_create_first_then_the_service_updates_then_the_old_one_goes(engine, applier, uid):
    applier.apply(evaluate(engine, _rotating_program(uid, "first")))
    old_id = applier.real_id("app-secret")

    result = applier.apply(evaluate(engine, _rotating_program(uid, "second")))
    new_id = applier.real_id("app-secret")
    assert new_id != old_id
    assert result.replaced == ["app-secret"]
    assert result.updated == ["app"]
    assert "taskSpec.containerSpec.secrets.secretId" in result.changed["app"]
    assert (result.step_index("create-replacement", "app-secret") < result.step_index("update", "app")
            < result.step_index("delete-replaced", "app-secret"))
    with pytest.raises(docker.errors.NotFound):
        engine.api.inspect_secret(old_id)
    spec = engine.api.inspect_service(applier.real_id("app"))["Spec"]
    assert spec["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretID"] == new_id
    task = single_task(engine, applier.real_id("app"))  # converged on the new secret
    assert exec_out(engine, task, ["cat", "/run/secrets/token"]) == "second"


def test_a_secret_the_program_names_is_replaced_delete_first_which_swarm_refuses_while_it_is_used(engine, applier, uid):
    """The bridge replaces a resource whose name the program set delete-first (nameRequiresDeleteBeforeReplace);
    the service only updates onto the new secret, so it is not taken along, and Swarm refuses the delete."""
    applier.apply(evaluate(engine, _rotating_program(uid, "first", named=True)))
    old_id = applier.real_id("app-secret")
    with pytest.raises(EngineError, match="in use"):
        applier.apply(evaluate(engine, _rotating_program(uid, "second", named=True)))
    assert engine.api.inspect_secret(old_id)["Spec"]["Name"] == f"{uid}-secret"


def test_a_resource_the_program_names_is_replaced_delete_first_an_autonamed_one_create_first(engine, applier, uid):
    def program(alias: str, named: bool):
        def declare():
            net = overlay(f"{uid}-net")
            dk.Service("svc", name=f"{uid}-fixed" if named else None, task_spec=dk.ServiceTaskSpecArgs(
                container_spec=dk.ServiceTaskSpecContainerSpecArgs(image=IMAGE),
                networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(id=net.id, aliases=[alias])]))
        return declare

    applier.apply(evaluate(engine, program("a", named=True)))
    result = applier.apply(evaluate(engine, program("b", named=True)))  # networks_advanceds forces replacement
    assert result.steps == [("delete-replaced", "svc"), ("create-replacement", "svc")]
    assert engine.api.inspect_service(applier.real_id("svc"))["Spec"]["TaskTemplate"]["Networks"][0]["Aliases"] == ["b"]

    applier.apply(evaluate(engine, program("b", named=False)))  # a new name: a replacement, create-first
    result = applier.apply(evaluate(engine, program("c", named=False)))
    assert result.steps == [("create-replacement", "svc"), ("delete-replaced", "svc")]
    assert engine.api.inspect_service(applier.real_id("svc"))["Spec"]["TaskTemplate"]["Networks"][0]["Aliases"] == ["c"]


def test_a_drift_that_replaces_an_autonamed_service_names_the_replacement_anew_before_anything_changes(engine, applier, uid):
    """Someone detached the service from its network by hand; the refreshed plan replaces it (attachments
    are ForceNew), and the engine names the replacement anew (step_generator.go continueStepsFromDiff runs
    Check without the old inputs): the program is evaluated again with that name, and the new service
    exists before the old one goes."""
    def declare():
        net = overlay(f"{uid}-net")
        dk.Service("svc", task_spec=dk.ServiceTaskSpecArgs(
            container_spec=dk.ServiceTaskSpecContainerSpecArgs(image=IMAGE, commands=["sleep", "3600"]),
            networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(id=net.id)]))

    applier.apply(evaluate(engine, declare))
    old_name = applier.live(SERVICE, "svc").state["name"]
    spec = engine.api.inspect_service(old_name)
    engine.api.update_service(spec["ID"], spec["Version"]["Index"], fetch_current_spec=True,
                              task_template={**spec["Spec"]["TaskTemplate"], "Networks": []})
    with pytest.raises(EngineApplyError, match=r"replaces \['svc'\], which the engine names anew"):
        applier.apply(evaluate(engine, declare), refresh=True)
    assert engine.api.inspect_service(old_name)  # refused before anything changed

    renamed: dict[str, int] = {}

    def rename(names: list[str]) -> Evaluation:
        renamed.update({name: renamed.get(name, 0) + 1 for name in names})
        return evaluate(engine, declare, renamed=renamed)

    result = applier.apply(evaluate(engine, declare), refresh=True, rename=rename)
    new_name = applier.live(SERVICE, "svc").state["name"]
    assert renamed == {"svc": 1} and new_name != old_name and new_name.startswith("svc-")
    assert result.steps == [("create-replacement", "svc"), ("delete-replaced", "svc")]
    assert not engine.api.services(filters={"name": old_name})
    assert engine.api.inspect_service(new_name)["Spec"]["TaskTemplate"]["Networks"]


def _health_program(uid: str, args: str, converge: bool = True, monitor: str = "2s"):
    def program():
        net = overlay(f"{uid}-net")
        dk.Service("svc", name=f"{uid}-svc", task_spec=dk.ServiceTaskSpecArgs(
            container_spec=dk.ServiceTaskSpecContainerSpecArgs(
                image=IMAGE, commands=["sh", "-c"], args=[args],
                healthcheck=dk.ServiceTaskSpecContainerSpecHealthcheckArgs(
                    tests=["CMD", "test", "-f", "/tmp/ok"], interval="1s", timeout="1s", retries=1),
                stop_grace_period="1s"),
            networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(id=net.id)],
            restart_policy=dk.ServiceTaskSpecRestartPolicyArgs(condition="any", delay="500ms")),
            update_config=dk.ServiceUpdateConfigArgs(failure_action="rollback", monitor=monitor, order="stop-first"),
            rollback_config=dk.ServiceRollbackConfigArgs(monitor="1s"),
            converge_config=dk.ServiceConvergeConfigArgs(delay="300ms", timeout="90s") if converge else None)
    return program


HEALTHY = "touch /tmp/ok; exec sleep 3600"


def test_service_update_that_fails_its_healthcheck_rolls_back_and_raises(engine, applier, uid):
    applier.apply(evaluate(engine, _health_program(uid, HEALTHY)))
    service_id = applier.real_id("svc")
    with pytest.raises(ConvergeError, match="rollback"):
        applier.apply(evaluate(engine, _health_program(uid, "exec sleep 3600")))  # never healthy
    service = engine.api.inspect_service(service_id)
    assert service["UpdateStatus"]["State"] in ("rollback_started", "rollback_completed")
    assert service["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"] == [HEALTHY]  # the engine rolled back


def test_update_without_converge_config_returns_at_once(engine, applier, uid):
    applier.apply(evaluate(engine, _health_program(uid, HEALTHY, converge=False, monitor="30s")))
    started = time.monotonic()
    result = applier.apply(evaluate(engine, _health_program(uid, "touch /tmp/ok; exec sleep 3601", converge=False,
                                                            monitor="30s")))
    assert result.updated == ["svc"]
    assert time.monotonic() - started < 5
    # the rolling update goes on without the applier (its monitor period alone is 30 s)
    deadline = time.monotonic() + 10
    while not engine.api.inspect_service(applier.real_id("svc")).get("UpdateStatus") and time.monotonic() < deadline:
        time.sleep(0.25)
    assert engine.api.inspect_service(applier.real_id("svc"))["UpdateStatus"]["State"] == "updating"


def test_create_that_never_converges_deletes_the_service_and_raises(engine, applier, uid):
    def program():
        net = overlay(f"{uid}-net")
        dk.Service("never", name=f"{uid}-never", task_spec=dk.ServiceTaskSpecArgs(
            container_spec=dk.ServiceTaskSpecContainerSpecArgs(
                image=IMAGE, commands=["sleep", "3600"],
                healthcheck=dk.ServiceTaskSpecContainerSpecHealthcheckArgs(tests=["CMD", "false"], interval="1s", retries=1)),
            networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(id=net.id)]),
            converge_config=dk.ServiceConvergeConfigArgs(delay="200ms", timeout="4s"))

    with pytest.raises(ConvergeError, match="did not converge"):
        applier.apply(evaluate(engine, program))
    assert not engine.api.services(filters={"name": f"{uid}-never"})
    with pytest.raises(KeyError):
        applier.live(SERVICE, "never")


def test_converge_config_with_global_mode_is_refused_like_the_schema(engine, applier, uid):
    program = lambda: dk.Service("g", name=f"{uid}-g", mode=dk.ServiceModeArgs(global_=True),  # noqa: E731
                                 task_spec=dk.ServiceTaskSpecArgs(container_spec=dk.ServiceTaskSpecContainerSpecArgs(image=IMAGE)),
                                 converge_config=dk.ServiceConvergeConfigArgs(timeout="10s"))
    with pytest.raises(UnmappedInputError, match="conflicts with mode.global"):
        applier.apply(evaluate(engine, program))


def test_container_replacement_is_delete_first_and_takes_dependents_with_it(engine, applier, uid, tmp_path):
    """pulumi-docker marks containers DeleteBeforeReplace: a fixed name never collides; the command
    that triggers on the container id is deleted before it and created after it."""
    log = tmp_path / "log"

    def program(env: str):
        def declare():
            ctr = dk.Container("ctr", name=f"{uid}-ctr", image=IMAGE, envs=[env], command=["sleep", "3600"])
            command.local.Command("cfg", create=f"echo create >> {log}", delete=f"echo delete >> {log}",
                                  triggers=[ctr.id], opts=pulumi.ResourceOptions(depends_on=[ctr]))
        return declare

    applier.apply(evaluate(engine, program("V=1")))
    old = applier.real_id("ctr")
    result = applier.apply(evaluate(engine, program("V=2")))
    assert result.steps == [("delete-replaced", "cfg"), ("delete-replaced", "ctr"), ("create-replacement", "ctr"),
                            ("create-replacement", "cfg")]
    assert sorted(result.replaced) == ["cfg", "ctr"]
    assert log.read_text().split() == ["create", "delete", "create"]
    assert applier.real_id("ctr") != old
    assert "V=2" in engine.api.inspect_container(applier.real_id("ctr"))["Config"]["Env"]


def test_a_delete_first_replacement_takes_only_dependents_whose_inputs_would_force_a_replacement(engine, applier, uid, tmp_path):
    """calculateDependentReplacements: a dependent goes before the replaced resource only when an input that
    took its output, made unknown, makes the dependent's diff a replacement. One that merely dependsOn it
    (the next gateway after this one), or whose such input updates in place, waits until the program
    registers it, after the replacement exists."""
    log = tmp_path / "log"

    def program(env: str):
        def declare():
            first = dk.Container("first", name=f"{uid}-first", image=IMAGE, envs=[env], command=["sleep", "3600"])
            dk.Container("after", name=f"{uid}-after", image=IMAGE, envs=[env], command=["sleep", "3600"],
                         opts=pulumi.ResourceOptions(depends_on=[first]))
            command.local.Command("note", create=f"echo create >> {log}", update=f"echo update >> {log}",
                                  environment={"FIRST": first.id})
        return declare

    applier.apply(evaluate(engine, program("V=1")))
    result = applier.apply(evaluate(engine, program("V=2")))
    assert result.steps[:2] == [("delete-replaced", "first"), ("create-replacement", "first")]
    assert result.step_index("create-replacement", "first") < result.step_index("delete-replaced", "after")
    assert result.updated == ["note"] and log.read_text().split() == ["create", "update"]


def test_container_in_place_update_and_recorded_only_changes(engine, applier, uid):
    def program(restart: str, interval: str):
        return lambda: dk.Container("ctr", name=f"{uid}-ctr", image=IMAGE, command=["sleep", "3600"], restart=restart,
                                    healthcheck=dk.ContainerHealthcheckArgs(tests=["CMD", "true"], interval=interval))

    applier.apply(evaluate(engine, program("no", "5s")))
    cid = applier.real_id("ctr")
    result = applier.apply(evaluate(engine, program("always", "5s")))
    assert result.updated == ["ctr"] and applier.real_id("ctr") == cid
    assert engine.api.inspect_container(cid)["HostConfig"]["RestartPolicy"]["Name"] == "always"
    result = applier.apply(evaluate(engine, program("always", "6s")))
    assert result.no_live_change == ["ctr"]
    assert engine.api.inspect_container(cid)["Config"]["Healthcheck"]["Interval"] == 5 * NS  # only recorded


def test_container_wait_for_an_unhealthy_container_raises_and_taints_it(engine, applier, uid):
    def program(test: str, timeout: int):
        return lambda: dk.Container("ctr", name=f"{uid}-ctr", image=IMAGE, command=["sleep", "3600"], wait=True, wait_timeout=timeout,
                                    healthcheck=dk.ContainerHealthcheckArgs(tests=["CMD", test], interval="500ms", retries=1))

    with pytest.raises(ContainerHealthError, match="healthy"):
        applier.apply(evaluate(engine, program("false", 3)))
    tainted = applier.live(CONTAINER, "ctr")
    assert tainted.tainted  # kept in the state, like the provider's partial create
    # (a generous timeout: on a loaded machine the first check can take seconds)
    result = applier.apply(evaluate(engine, program("true", 30)))
    assert result.replaced == ["ctr"]
    assert engine.api.inspect_container(applier.real_id("ctr"))["State"]["Health"]["Status"] == "healthy"


def test_protected_resources_are_never_deleted_and_retained_ones_stay(engine, applier, uid):
    def program(label: str, keep: bool = True):
        def declare():
            if keep:
                dk.Volume("data", name=f"{uid}-data", labels=[dk.VolumeLabelArgs(label="v", value=label)],
                          opts=pulumi.ResourceOptions(protect=True))
            dk.Volume("cache", name=f"{uid}-cache", opts=pulumi.ResourceOptions(retain_on_delete=True))
        return declare

    applier.apply(evaluate(engine, program("1")))
    with pytest.raises(ProtectedResourceError, match="protection"):
        applier.apply(evaluate(engine, program("2")))  # a replacement
    with pytest.raises(ProtectedResourceError, match="protection"):
        applier.apply(evaluate(engine, program("1", keep=False)))  # a delete
    assert engine.api.inspect_volume(f"{uid}-data")["Labels"] == {"v": "1"}
    with pytest.raises(ProtectedResourceError):
        applier.destroy(honor_protect=True)

    def only_data():
        dk.Volume("data", name=f"{uid}-data", labels=[dk.VolumeLabelArgs(label="v", value="1")],
                  opts=pulumi.ResourceOptions(protect=True))

    result = applier.apply(evaluate(engine, only_data))
    assert result.deleted == ["cache"]
    assert engine.api.inspect_volume(f"{uid}-cache")  # retain_on_delete: gone from the state only


def test_deletes_run_in_reverse_dependency_order(engine, applier, uid):
    def program():
        net = overlay(f"{uid}-net")
        cfg = dk.ServiceConfig("cfg", name=f"{uid}-cfg", data=b64("x"))
        dk.Service("svc", name=f"{uid}-svc", task_spec=dk.ServiceTaskSpecArgs(
            container_spec=dk.ServiceTaskSpecContainerSpecArgs(
                image=IMAGE, commands=["sleep", "3600"], stop_grace_period="1s",
                configs=[dk.ServiceTaskSpecContainerSpecConfigArgs(config_id=cfg.id, config_name=cfg.name, file_name="/c")]),
            networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(id=net.id)]),
            converge_config=dk.ServiceConvergeConfigArgs(delay="200ms", timeout="60s"))

    applier.apply(evaluate(engine, program))
    result = applier.apply(evaluate(engine, lambda: None))
    assert sorted(result.deleted) == sorted(["svc", "cfg", f"{uid}-net-net"])
    assert result.deleted[0] == "svc"  # before the config and the network it uses
    assert not engine.api.services(filters={"name": f"{uid}-svc"})
    # a swarm network is removed once the manager has no task on it any more: it goes shortly after
    deadline = time.monotonic() + 20
    while engine.api.networks(names=[f"{uid}-net"]) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not engine.api.networks(names=[f"{uid}-net"])


def test_the_programs_own_components_work_on_the_engine(engine, applier, uid):
    """The repository's Networks component, container runtime settings and apply_in_container
    (docker exec -i with DOCKER_HOST and the bundle on stdin) on a real engine."""
    runtime = ContainerRuntime(stack="engapply", environment="test", restart="unless-stopped", log_max_size="1m",
                               log_max_files=2, healthcheck_interval="1s")

    def program():
        networks = Networks("networks", NetworksArgs(edge_name=f"{uid}-edge", edge_subnet="10.203.0.0/24",
                                                     edge_dynamic_range="10.203.0.128/25", backend_name=f"{uid}-backend",
                                                     egress_name=None, labels={"com.carecircle.stack": "engapply"}))
        gateway = dk.Container("gw", name=f"{uid}-gw", image=IMAGE, command=["sleep", "3600"],
                               networks_advanced=[dk.ContainerNetworksAdvancedArgs(name=networks.edge.name, ipv4_address="10.203.0.10"),
                                                  dk.ContainerNetworksAdvancedArgs(name=networks.backend.name)],
                               healthcheck=runtime.healthcheck(["CMD", "true"], start_period="1s"), wait=True, wait_timeout=30,
                               **runtime.container_kwargs("gateway"))
        apply_in_container("gw-config", gateway, f"{uid}-gw", "cat > /tmp/bundle && echo applied", "the-bundle",
                           engine.host)

    result = applier.apply(evaluate(engine, program))
    assert result.commands["gw-config"].stdout == "applied"
    cid = applier.real_id("gw")
    assert exec_out(engine, cid, ["cat", "/tmp/bundle"]) == "the-bundle"
    backend = engine.api.inspect_network(f"{uid}-backend")
    assert backend["Internal"] is True
    c = engine.api.inspect_container(cid)
    assert c["Config"]["Labels"]["com.carecircle.role"] == "gateway"
    assert c["HostConfig"]["LogConfig"]["Config"] == {"max-size": "1m", "max-file": "2"}


def test_every_input_the_stacks_declare_is_mapped(stacks):
    """The applier can apply what staging and prod declare; dev builds an image (docker Image),
    which it refuses by name."""
    applier = EngineApplier("unix:///never-contacted.sock")
    for name in ("staging", "prod"):
        applier.validate(stacks[name])
    with pytest.raises(UnsupportedResourceError, match="docker:index/image:Image"):
        applier.validate(stacks["dev"])
    dev = Evaluation(stack="dev", resources=[r for r in stacks["dev"].resources if r.type != "docker:index/image:Image"])
    applier.validate(dev)


# ---------------------------------------------------------------------------------------------
# Every mapped field is proven by a test above
# ---------------------------------------------------------------------------------------------



def test_a_targeted_up_changes_only_its_targets_and_leaves_every_other_resource_as_it_is(engine, applier, uid):
    """`pulumi up --target`: what tests/swarm/acme.py plays the engine's order with (what waits for a
    dynamic resource stays as it is until the resource has its outputs)."""
    def program(content: str, also: bool = True):
        def declare():
            dk.Secret("targeted", name=f"{uid}-targeted", data=b64(content))
            if also:
                dk.Secret("left", name=f"{uid}-left", data=b64(content))
        return declare

    def engine_secrets() -> dict[str, str]:
        return {s.name: s.id for s in engine.client.secrets.list() if s.name.startswith(uid)}

    applier.apply(evaluate(engine, program("one")))
    before = engine_secrets()
    changed = evaluate(engine, program("two"))
    result = applier.apply(changed, target={r.urn for r in changed.resources if r.name == "targeted"})
    after = engine_secrets()
    assert result.replaced == ["targeted"] and after[f"{uid}-targeted"] != before[f"{uid}-targeted"]
    assert after[f"{uid}-left"] == before[f"{uid}-left"]  # its change waits for an up that targets it
    dropped = evaluate(engine, program("two", also=False))
    applier.apply(dropped, target={r.urn for r in dropped.resources})
    assert f"{uid}-left" in engine_secrets()  # not targeted: not deleted either
    applier.apply(dropped)
    assert f"{uid}-left" not in engine_secrets()

"""The applier plans from what the provider reads back, on a real single-node Swarm: each test shows a way
the real `pulumi up` diverges from "compare with the previous declaration" (issue 15), and what the
program must therefore declare."""

from __future__ import annotations

import time

import pulumi
import pulumi_docker as dk
import pytest

from engine_apply import CONTAINER, NETWORK, SERVICE, ConvergeError, EngineError, UnmappedInputError
from real_engine import IMAGE, applier_on, evaluate, overlay, task_containers


class Rotating:
    """A Go map ranged over on successive calls: each call starts one entry further (never the order of
    the call before), so a test sees what a reordered env does without waiting for chance."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, entries: list[str]) -> list[str]:
        self.calls += 1
        shift = self.calls % len(entries) if entries else 0
        return entries[shift:] + entries[:shift]


def _service(uid: str, *, env: dict[str, str], replicas: int = 2, max_replicas: int = 0, stop_grace: str = "30s",
             monitor: str = "1s", interval: str = "1s", converge: bool = True):
    def program():
        net = overlay(f"{uid}-net")
        dk.Service("svc", task_spec=dk.ServiceTaskSpecArgs(
            container_spec=dk.ServiceTaskSpecContainerSpecArgs(
                image=IMAGE, commands=["sleep", "3600"], env=env, stop_grace_period=stop_grace,
                healthcheck=dk.ServiceTaskSpecContainerSpecHealthcheckArgs(tests=["CMD", "true"], interval=interval)),
            placement=dk.ServiceTaskSpecPlacementArgs(max_replicas=max_replicas),
            networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(id=net.id)]),
            mode=dk.ServiceModeArgs(replicated=dk.ServiceModeReplicatedArgs(replicas=replicas)),
            update_config=dk.ServiceUpdateConfigArgs(order="start-first", monitor=monitor),
            converge_config=dk.ServiceConvergeConfigArgs(delay="500ms", timeout="60s") if converge else None)
    return program


def _tasks(engine, applier) -> set[str]:
    return set(task_containers(engine, applier.real_id("svc")))


@pytest.mark.parametrize(("declared", "read_back"), [("120s", "2m"), ("90s", "1m30s"), ("1000ms", "1s")])
def test_a_duration_the_provider_reads_back_in_another_form_is_a_diff_on_every_run(engine, applier, uid, declared, read_back):
    applier.apply(evaluate(engine, _service(uid, env={"A": "1"}, stop_grace=declared)))
    assert applier.live(SERVICE, "svc").state["taskSpec"]["containerSpec"]["stopGracePeriod"] == read_back
    for _ in range(2):  # every run, forever: the state keeps the read-back form
        assert applier.preview(evaluate(engine, _service(uid, env={"A": "1"}, stop_grace=declared)))["svc"] == \
            ("update", ["taskSpec.containerSpec.stopGracePeriod"])
        applier.apply(evaluate(engine, _service(uid, env={"A": "1"}, stop_grace=declared)))
    # Declared in the form it is read back in, there is nothing to do.
    applier.apply(evaluate(engine, _service(uid, env={"A": "1"}, stop_grace=read_back)))
    assert applier.preview(evaluate(engine, _service(uid, env={"A": "1"}, stop_grace=read_back)))["svc"] == ("same", [])


def test_update_and_healthcheck_durations_of_a_minute_or_more_are_read_back_short(engine, applier, uid):
    program = _service(uid, env={"A": "1"}, monitor="60s", interval="60s", converge=False)  # the first check is a minute away
    applier.apply(evaluate(engine, program))
    state = applier.live(SERVICE, "svc").state
    assert (state["updateConfig"]["monitor"], state["taskSpec"]["containerSpec"]["healthcheck"]["interval"]) == ("1m", "1m")
    assert applier.preview(evaluate(engine, program))["svc"] == \
        ("update", ["taskSpec.containerSpec.healthcheck.interval", "updateConfig.monitor"])


def test_a_replicas_only_change_rolls_every_task_when_the_env_comes_out_in_another_order(engine, uid):
    env = {"A": "1", "B": "2", "C": "3", "D": "4"}
    with applier_on(engine, map_order=Rotating()) as applier:
        applier.apply(evaluate(engine, _service(uid, env=env, replicas=2)))
        before = _tasks(engine, applier)
        result = applier.apply(evaluate(engine, _service(uid, env=env, replicas=3)))
        assert result.changed["svc"] == ["mode.replicated.replicas"]  # all the diff says...
        time.sleep(2)
        assert not before & _tasks(engine, applier)  # ...yet Swarm replaced every task: the env's order changed


def test_a_replicas_or_placement_only_change_keeps_the_tasks_when_the_env_has_one_entry(engine, uid):
    with applier_on(engine, map_order=Rotating()) as applier:
        applier.apply(evaluate(engine, _service(uid, env={"DOTENV_CONFIG_PATH": "/run/configs/app.env"}, replicas=2)))
        before = _tasks(engine, applier)
        applier.apply(evaluate(engine, _service(uid, env={"DOTENV_CONFIG_PATH": "/run/configs/app.env"}, replicas=3)))
        time.sleep(2)
        assert before < _tasks(engine, applier)  # a scale: the two kept, one added
        before = _tasks(engine, applier)
        applier.apply(evaluate(engine, _service(uid, env={"DOTENV_CONFIG_PATH": "/run/configs/app.env"}, replicas=3,
                                                 max_replicas=5)))
        time.sleep(2)
        assert _tasks(engine, applier) == before  # a placement change the node still satisfies: nothing moves


def test_a_failed_update_is_recorded_with_the_new_inputs_and_only_a_refresh_sees_the_rollback(engine, applier, uid):
    def program(test: str):
        return lambda: dk.Service("svc", task_spec=dk.ServiceTaskSpecArgs(
            container_spec=dk.ServiceTaskSpecContainerSpecArgs(
                image=IMAGE, commands=["sleep", "3600"], stop_grace_period="1s",
                healthcheck=dk.ServiceTaskSpecContainerSpecHealthcheckArgs(tests=["CMD", test], interval="500ms", retries=1))),
            update_config=dk.ServiceUpdateConfigArgs(order="start-first", monitor="2s", failure_action="rollback"),
            converge_config=dk.ServiceConvergeConfigArgs(delay="300ms", timeout="60s"))

    applier.apply(evaluate(engine, program("true")))
    with pytest.raises(ConvergeError, match="rollback"):
        applier.apply(evaluate(engine, program("false")))
    state = applier.live(SERVICE, "svc").state
    assert state["taskSpec"]["containerSpec"]["healthcheck"]["tests"] == ["CMD", "false"]  # what the provider believes
    spec = engine.api.inspect_service(applier.real_id("svc"))["Spec"]
    assert spec["TaskTemplate"]["ContainerSpec"]["Healthcheck"]["Test"] == ["CMD", "true"]  # what runs
    assert applier.preview(evaluate(engine, program("false")))["svc"] == ("same", [])  # re-running changes nothing
    assert applier.preview(evaluate(engine, program("false")), refresh=True)["svc"] == \
        ("update", ["taskSpec.containerSpec.healthcheck.tests"])  # `refresh: always` sees the rollback


def test_a_refresh_sees_a_scale_made_outside_pulumi_and_the_next_apply_undoes_it(engine, applier, uid):
    applier.apply(evaluate(engine, _service(uid, env={"A": "1"}, replicas=1)))
    service = engine.api.inspect_service(applier.real_id("svc"))
    spec = service["Spec"]
    spec["Mode"]["Replicated"]["Replicas"] = 2
    engine.api._raise_for_status(engine.api._post_json(engine.api._url("/services/{0}/update", service["ID"]), data=spec,
                                                       params={"version": service["Version"]["Index"]}))
    assert applier.preview(evaluate(engine, _service(uid, env={"A": "1"}, replicas=1)))["svc"] == ("same", [])
    result = applier.apply(evaluate(engine, _service(uid, env={"A": "1"}, replicas=1)), refresh=True)
    assert result.refreshed["svc"] == ["mode.replicated.replicas"] and result.updated == ["svc"]
    assert engine.api.inspect_service(applier.real_id("svc"))["Spec"]["Mode"]["Replicated"]["Replicas"] == 1


def test_a_network_the_program_names_cannot_be_replaced_while_a_service_uses_it(engine, applier, uid):
    def program(label: str, named: bool):
        def declare():
            net = dk.Network("net", name=f"{uid}-net" if named else None, driver="overlay", attachable=True,
                             labels=[dk.NetworkLabelArgs(label="v", value=label)])
            dk.Service("svc", task_spec=dk.ServiceTaskSpecArgs(
                container_spec=dk.ServiceTaskSpecContainerSpecArgs(image=IMAGE, commands=["sleep", "3600"]),
                networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(id=net.id)]))
        return declare

    applier.apply(evaluate(engine, program("1", named=False)))
    result = applier.apply(evaluate(engine, program("2", named=False)))
    assert result.steps == [("create-replacement", "net"), ("create-replacement", "svc"), ("delete-replaced", "svc"),
                            ("delete-replaced", "net")]  # autonamed: the new ones exist before the old ones go

    applier.destroy()
    applier.apply(evaluate(engine, program("2", named=True)))
    service_id, network_id = applier.real_id("svc"), applier.real_id("net")
    with pytest.raises(EngineError, match="in use by service"):  # (the service, on a new network, is named anew)
        applier.apply(evaluate(engine, program("3", named=True)),
                      rename=lambda names: evaluate(engine, program("3", named=True), renamed=dict.fromkeys(names, 1)))
    # Named: replaced delete-first, and the service is not taken with it: its taskSpec, the input that took the
    # network's id, made unknown is an update for the provider (task_spec is not ForceNew; only what is inside
    # it is), so the engine deletes the network while the service uses it, Swarm refuses for as long as the
    # provider retries, and the apply fails with both still running.
    assert applier.history[-1].steps == []
    assert engine.api.inspect_service(service_id) and engine.api.inspect_network(network_id)


def test_ignore_changes_keeps_the_previous_value_and_replace_applies_the_declared_one(engine, applier, uid):
    def program(options: dict[str, str]):
        return lambda: dk.Network("net", name=f"{uid}-net", driver="overlay", attachable=True, options=options,
                                  opts=pulumi.ResourceOptions(ignore_changes=["options"]))

    applier.apply(evaluate(engine, program({"com.example.v": "1"})))
    network_id = applier.real_id("net")
    # The engine adds its VXLAN id to the options it reports: without ignore_changes, a replacement on every run.
    assert "com.docker.network.driver.overlay.vxlanid_list" in applier.live(NETWORK, "net").state["options"]
    assert applier.apply(evaluate(engine, program({"com.example.v": "1"}))).unchanged == ["net"]
    assert applier.apply(evaluate(engine, program({"com.example.v": "2"}))).unchanged == ["net"]  # ignored
    assert engine.api.inspect_network(network_id)["Options"]["com.example.v"] == "1"
    result = applier.apply(evaluate(engine, program({"com.example.v": "2"})), replace=["net"])
    assert result.replaced == ["net"]
    assert engine.api.inspect_network(applier.real_id("net"))["Options"]["com.example.v"] == "2"


def test_container_values_read_back_in_another_form(engine, applier, uid):
    def program(cpus: str, interval: str):
        return lambda: dk.Container("ctr", name=f"{uid}-ctr", image=IMAGE, command=["sleep", "3600"], cpus=cpus,
                                    healthcheck=dk.ContainerHealthcheckArgs(tests=["CMD", "true"], interval=interval))

    applier.apply(evaluate(engine, program("1", "60s")))
    state = applier.live(CONTAINER, "ctr").state
    assert (state["cpus"], state["healthcheck"]["interval"]) == ("1.0", "1m0s")
    # cpus is ForceNew: "1" read back as "1.0" replaces the container on every run
    assert applier.preview(evaluate(engine, program("1", "60s")))["ctr"] == ("replace", ["cpus", "healthcheck.interval"])
    applier.apply(evaluate(engine, program("1.0", "1m0s")))
    assert applier.preview(evaluate(engine, program("1.0", "1m0s")))["ctr"] == ("same", [])


def test_the_providers_validators_refuse_what_it_refuses(engine, applier, uid):
    program = lambda: dk.Service("svc", task_spec=dk.ServiceTaskSpecArgs(  # noqa: E731
        container_spec=dk.ServiceTaskSpecContainerSpecArgs(image=IMAGE)),
        rollback_config=dk.ServiceRollbackConfigArgs(failure_action="rollback"))
    with pytest.raises(UnmappedInputError, match="rollbackConfig.failureAction"):
        applier.apply(evaluate(engine, program))

"""The rollout gate (templates/swarm-rollout.sh), the only thing that fails `pulumi up` on a rolled-back or
half-finished release, against every state Swarm reports. A stand-in `docker` answers the gate's
`service inspect` / `service ps` / `inspect --type task` calls from a scripted sequence of polls (one
frame per poll), and a stand-in `sleep` returns at once; the timing on a real swarm is tests/swarm's
(test_provider_on_swarm.py test_3 for pull failures)."""

from __future__ import annotations

import json
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest

from carecircle.components.swarm_service import ROLLOUT_SCRIPT

IMAGE = "ghcr.io/carecircle/api:2.0.0@sha256:" + "2" * 64
SPEC_CHANGED = 1796562389567200496
FAKE_DOCKER = textwrap.dedent('''\
    #!/usr/bin/env python3
    """docker, as far as the rollout gate asks it: frames[i] answers poll i (a poll starts with the
    UpdateStatus.State question); the last frame repeats."""
    import json, os, sys
    state_dir = os.environ["GATE_STATE"]
    frames = json.load(open(os.path.join(state_dir, "frames.json")))
    counter = os.path.join(state_dir, "poll")
    args = sys.argv[1:]
    fmt = args[args.index("--format") + 1] if "--format" in args else ""
    if args[:2] == ["service", "inspect"] and "UpdateStatus.State" in fmt:
        poll = int(open(counter).read()) + 1 if os.path.exists(counter) else 0
        open(counter, "w").write(str(poll))
    poll = int(open(counter).read()) if os.path.exists(counter) else 0
    frame = frames[min(poll, len(frames) - 1)]
    if frame.get("engine_error"):  # the manager in DOCKER_HOST does not answer
        sys.exit(frame["engine_error"])
    SPEC_CHANGED = 1796562389567200496  # the service's UpdatedAt in nanoseconds; tasks default to after it
    if args[:2] == ["service", "inspect"]:
        if "UpdateStatus.State" in fmt:
            print(frame.get("state", ""))
        elif "UpdateStatus.Message" in fmt:
            print(frame.get("message", ""))
        elif "ContainerSpec.Image" in fmt:
            print(frame.get("image", "IMAGE"))
        elif "Replicas" in fmt:
            print(frame.get("desired", ""))
        elif "UpdatedAt.UnixNano" in fmt:
            print(frame.get("updated", SPEC_CHANGED))
        elif "UpdateStatus.StartedAt" in fmt:  # a new updater starts with each service update
            updates = os.path.join(state_dir, "updates")
            print(len(open(updates).readlines()) if os.path.exists(updates) else 0)
        sys.exit(0)
    tasks = frame.get("tasks", [])
    if args[:2] == ["service", "ps"] and "--quiet" in args:
        print("\\n".join(f"task{i}" for i in range(len(tasks))))
        sys.exit(0)
    if args[:3] == ["inspect", "--type", "task"]:
        for arg in args[5:]:
            task = tasks[int(arg.removeprefix("task"))]
            print(f'{task.get("created", SPEC_CHANGED + 1)}|{task.get("image", "IMAGE")}|{task.get("error", "")}|'
                  f'{task.get("node", "node-a")}|{task.get("state", "running")}|{arg}')
        sys.exit(0)
    if args[:2] == ["node", "inspect"]:
        print(frame.get("nodes", {}).get(args[-1], "ready"))
        sys.exit(0)
    if args[:2] == ["service", "update"]:  # recorded, one line per call
        with open(os.path.join(state_dir, "updates"), "a") as updates:
            updates.write(" ".join(args) + "\\n")
        sys.exit(0)
    if args[:2] == ["service", "ps"]:
        running = "desired-state=running" in args
        for task in tasks:
            if running and task["desired"] != "Running":
                continue
            line = fmt.replace("{{.CurrentState}}", task["current"]).replace("{{.Image}}", task.get("image", "IMAGE"))
            line = line.replace("{{.Error}}", task.get("error", "")).replace("{{.Name}}", "svc.1").replace("{{.Node}}", task.get("node", "node-a"))
            print(line.replace("{{.DesiredState}}", task["desired"]))
        sys.exit(0)
    sys.exit("fake docker: unexpected call " + " ".join(args))
''').replace("IMAGE", IMAGE)


def task(current: str, desired: str = "Running", **extra: str) -> dict[str, str]:
    return {"current": current, "desired": desired, **extra}


RUNNING = task("Running 3 seconds ago")


def gate(tmp_path: Path, frames: list[dict], timeout: int = 20, docker_host: str = "") -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in (("docker", FAKE_DOCKER), ("sleep", "#!/bin/sh\nexit 0\n")):
        path = bin_dir / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "frames.json").write_text(json.dumps(frames))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "GATE_STATE": str(tmp_path), **({"DOCKER_HOST": docker_host} if docker_host else {})}
    return subprocess.run(["sh", "-c", ROLLOUT_SCRIPT, "rollout", "svc-id", str(timeout)], env=env, capture_output=True,
                          text=True, timeout=60)


def polls(tmp_path: Path) -> int:
    return int((tmp_path / "poll").read_text()) + 1


def test_a_rollout_is_done_only_once_swarm_says_completed_and_every_replica_runs(tmp_path):
    between_batches = {"state": "updating", "desired": 3, "tasks": [RUNNING, RUNNING, RUNNING]}
    frames = [between_batches, between_batches, {"state": "completed", "desired": 3, "tasks": [RUNNING, RUNNING, RUNNING]}]
    done = gate(tmp_path, frames)
    assert done.returncode == 0, done.stderr
    assert polls(tmp_path) == 3  # every replica ran between batches too, yet the gate waited for "completed"
    assert "3/3 replicas running, update completed" in done.stdout


@pytest.mark.parametrize("state", ["rollback_started", "rollback_completed", "paused", "rollback_paused"])
def test_a_rolled_back_or_paused_update_fails_the_apply_with_swarms_message(tmp_path, state):
    message = "update rolled back due to failure or early termination of task abc"
    failed = gate(tmp_path, [{"state": state, "message": message, "desired": 3, "tasks": [RUNNING, RUNNING, RUNNING]}])
    assert failed.returncode == 1
    assert f"update {state}: {message}" in failed.stderr


def test_a_scale_or_a_create_without_an_update_status_waits_for_every_replica(tmp_path):
    frames = [{"state": "", "desired": 3, "tasks": [RUNNING, task("Starting 1 second ago")]},
              {"state": "", "desired": 3, "tasks": [RUNNING, RUNNING, task("Preparing 1 second ago")]},
              {"state": "", "desired": 3, "tasks": [RUNNING, RUNNING, RUNNING]}]
    done = gate(tmp_path, frames)
    assert done.returncode == 0, done.stderr
    assert polls(tmp_path) == 3 and "3/3 replicas running" in done.stdout


def test_a_rollout_that_does_not_finish_in_time_fails_with_the_tasks(tmp_path):
    stuck = {"state": "updating", "desired": 3, "tasks": [RUNNING, RUNNING, task("Starting 9 minutes ago", node="edge-2")]}
    failed = gate(tmp_path, [stuck], timeout=6)
    assert failed.returncode == 1
    assert "2/3 replicas running after 6s (update updating)" in failed.stderr
    assert "svc.1 edge-2 Running Starting 9 minutes ago" in failed.stderr  # which node it waits on


def test_nodes_that_cannot_pull_the_image_fail_the_apply_at_once_naming_the_registry_credentials(tmp_path):
    rejected = task("Rejected 2 seconds ago", desired="Shutdown", image=IMAGE,
                    error=f"No such image: {IMAGE}")
    failed = gate(tmp_path, [{"state": "", "desired": 3, "tasks": [rejected, task("Pending 1 second ago")]}], timeout=300)
    assert failed.returncode == 1 and polls(tmp_path) == 1
    assert f"the nodes cannot pull {IMAGE}: No such image" in failed.stderr
    assert "docker:registryAuth" in failed.stderr


def test_an_old_releases_pull_error_does_not_fail_a_new_one(tmp_path):
    old = task("Rejected 5 minutes ago", desired="Shutdown", image="ghcr.io/carecircle/api:1.9.0@sha256:" + "1" * 64,
               error="No such image: the old one")
    done = gate(tmp_path, [{"state": "completed", "desired": 1, "tasks": [old, RUNNING]}])
    assert done.returncode == 0, done.stderr


def test_a_pull_refused_before_the_spec_changed_does_not_fail_the_same_image_once_credentials_came(tmp_path):
    # The same release, first deployed without docker:registryAuth, then updated with it: the rejected
    # tasks of the first attempt stay in the history with the same image, but they predate the update.
    refused = task("Rejected 20 seconds ago", desired="Shutdown", image=IMAGE, error=f"No such image: {IMAGE}",
                   created=SPEC_CHANGED - 20_000_000_000)
    frames = [{"state": "updating", "desired": 1, "tasks": [task("Preparing 1 second ago"), refused]},
              {"state": "completed", "desired": 1, "tasks": [RUNNING, refused]}]
    done = gate(tmp_path, frames)
    assert done.returncode == 0, done.stderr
    assert polls(tmp_path) == 2 and "1/1 replicas running" in done.stdout


@pytest.mark.parametrize("answered", [0, 2])
def test_a_manager_that_stops_answering_fails_the_apply_naming_it_and_what_to_run(tmp_path, answered):
    # What a manager cut off from the others answers after the engine's 20 s swarm request timeout.
    lost = "Error response from daemon: rpc error: code = DeadlineExceeded desc = context deadline exceeded"
    updating = {"state": "updating", "desired": 3, "tasks": [RUNNING, RUNNING, task("Starting 1 second ago")]}
    failed = gate(tmp_path, [updating] * answered + [{"engine_error": lost}], docker_host="ssh://deploy@manager-1.example")
    assert failed.returncode == 1
    assert f"the manager ssh://deploy@manager-1.example did not answer (docker service inspect): {lost}" in failed.stderr
    assert "run pulumi up again through another one: pulumi config set docker:host ssh://<user>@<another manager>" in failed.stderr


def service_updates(tmp_path: Path) -> list[str]:
    updates = tmp_path / "updates"
    return updates.read_text().splitlines() if updates.exists() else []


def test_an_update_waiting_on_a_task_placed_on_a_down_node_is_restarted_once_on_the_live_nodes(tmp_path):
    # A manager lost mid-deploy (docs/scaling.md, "A manager lost during a deploy"): the update's task on that
    # node never starts, and Swarm's updater would wait for it until the node returns.
    stranded = task("Starting 40 seconds ago", desired="Shutdown", node="node-lost", state="starting")
    waiting = {"state": "updating", "desired": 3, "nodes": {"node-lost": "down"},
               "tasks": [stranded, RUNNING, RUNNING, RUNNING]}
    restarted = {**waiting, "updated": SPEC_CHANGED + 60_000_000_000}  # UpdatedAt moved: the stranded task predates it
    frames = [waiting, restarted, restarted, {**restarted, "state": "completed"}]
    done = gate(tmp_path, frames)
    assert done.returncode == 0, done.stderr
    assert service_updates(tmp_path) == [
        "service update --detach --quiet --no-resolve-image --label-add com.carecircle.update-restarted=task0 svc-id",
        "service update --detach --quiet --no-resolve-image --label-rm com.carecircle.update-restarted svc-id"]
    assert "the update waits on task task0, placed on node node-lost, which is down" in done.stderr
    assert polls(tmp_path) == 4 and "3/3 replicas running, update completed" in done.stdout


@pytest.mark.parametrize("case", ["node only unreachable so far", "task running", "not updating", "task of an earlier update"])
def test_an_update_is_left_to_swarm_unless_it_waits_on_a_task_placed_on_a_down_node(tmp_path, case):
    stranded = task("Starting 40 seconds ago", node="node-lost", state="starting")
    frame = {"state": "updating", "desired": 2, "nodes": {"node-lost": "down"}, "tasks": [stranded, RUNNING]}
    if case == "node only unreachable so far":
        frame["nodes"] = {"node-lost": "unknown"}
    elif case == "task running":
        stranded["state"] = "running"
    elif case == "not updating":
        frame["state"] = ""
    else:
        stranded["created"] = SPEC_CHANGED - 1
    done_frame = {**frame, "state": "completed", "tasks": [RUNNING, RUNNING]}
    done = gate(tmp_path, [frame, frame, done_frame])
    assert done.returncode == 0, done.stderr
    assert service_updates(tmp_path) == [] and "which is down" not in done.stderr


def test_the_gate_runs_again_when_the_replicas_change():
    from carecircle.offline import evaluate_stack

    def triggers(replicas: int) -> list:
        evaluation = evaluate_stack("prod", overrides={"carecircle:workersReplicas": replicas})
        return next(r for r in evaluation.resources if r.name == "carecircle-prod-workers-rollout").inputs["triggers"]

    assert triggers(3) != triggers(4)  # a scale is a rollout the gate waits for
    assert json.dumps(triggers(3)).count('"replicas": 3') == 1


def test_the_script_is_what_the_gate_runs():
    # The stand-in answers exactly the calls the script makes; a new call must be added here first.
    # Every call goes through `ask` (the manager named when it does not answer), which alone runs docker.
    lines = [line for line in ROLLOUT_SCRIPT.splitlines() if not line.strip().startswith("#")]
    assert [line.strip() for line in lines if "docker " in line and "echo" not in line] == ['if ! docker "$@" 2>"$errors"; then']
    calls = {" ".join(line.split("ask ", 1)[1].split(" ")[:2]) for line in lines if "ask " in line and "echo" not in line}
    assert calls == {"service inspect", "service ps", "inspect --type", "node inspect", "service update"}

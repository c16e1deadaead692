# Waits until a Swarm service has rolled out its current spec: every desired replica running (and
# healthy: Swarm reports a task with a healthcheck as running only once it passed), no update in
# progress. Fails when Swarm rolled the update back or paused it, or after the timeout.
# Run by pulumi-command with DOCKER_HOST set to a manager: sh -c "<this script>" rollout SERVICE SECONDS
# (The provider's own converge wait may return after the first batch of a rolling update; this one
# waits for the last, so `pulumi up` fails when any batch fails.)
set -eu
service="$1"
timeout="$2"
waited=0
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
# Every question goes to the manager in DOCKER_HOST (docker:host). When it does not answer (down, or cut off
# from the other managers: the engine gives up after 20 s with DeadlineExceeded), the apply fails naming
# that manager and the way on, not with the engine's bare error.
ask() {
    if ! docker "$@" 2>"$errors"; then
        echo "carecircle rollout: $service: the manager ${DOCKER_HOST:-of the local engine} did not answer (docker $1 $2): $(cat "$errors")" >&2
        echo "carecircle rollout: if that manager is down or cut off from the other managers, run pulumi up again through another one: pulumi config set docker:host ssh://<user>@<another manager>, then pulumi up (docs/scaling.md, \"A manager lost during a deploy\")" >&2
        exit 1
    fi
}
while :; do
    state=$(ask service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$service")
    case "$state" in
        rollback_started|rollback_completed|rollback_paused|paused)
            message=$(ask service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.Message}}{{end}}' "$service")
            echo "carecircle rollout: $service: update $state: $message" >&2
            ask service ps --no-trunc --filter desired-state=shutdown --format '{{.Name}} {{.CurrentState}} {{.Error}}' "$service" | head -5 >&2
            exit 1
            ;;
    esac
    # A node that cannot pull the image rejects the task at once, and Swarm retries forever: say so now.
    # Only tasks created since the spec last changed count: a pull refused before credentials were
    # added (same image, older task) is not this release's. Nanosecond stamps have 19 digits, so
    # awk compares them as strings.
    image=$(ask service inspect --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}' "$service")
    since=$(ask service inspect --format '{{.UpdatedAt.UnixNano}}' "$service")
    tasks=$(ask service ps --quiet --no-trunc "$service")
    pull=""
    waiting_on=""
    if [ -n "$tasks" ]; then
        # shellcheck disable=SC2086 # one argument per task id
        details=$(ask inspect --type task --format '{{.CreatedAt.UnixNano}}|{{.Spec.ContainerSpec.Image}}|{{.Status.Err}}|{{.NodeID}}|{{.Status.State}}|{{.ID}}' $tasks)
        pull=$(printf '%s\n' "$details" | awk -F'|' -v since="$since" -v image="$image" '($1 "") >= (since "") && $2 == image && $3 ~ /No such image|pull access denied|unauthorized|manifest unknown|not found/ { print $3; exit }')
        # This update's tasks that never reached running: Swarm's updater waits for each of them to start.
        if [ "$state" = "updating" ]; then
            waiting_on=$(printf '%s\n' "$details" | awk -F'|' -v since="$since" '($1 "") >= (since "") && $4 != "" && $5 ~ /^(new|pending|assigned|accepted|preparing|ready|starting)$/ { print $4 "|" $6 }')
        fi
    fi
    if [ -n "$pull" ]; then
        echo "carecircle rollout: $service: the nodes cannot pull $image: $pull" >&2
        echo "carecircle rollout: a private registry needs its credentials in docker:registryAuth (a secret; docs/scaling.md, \"Registry credentials\")" >&2
        exit 1
    fi
    # A task of this update placed on a node that went down (cut off, or the manager lost mid-deploy) never
    # reports again, and Swarm's updater waits for it until that node comes back or is removed (swarmkit
    # manager/orchestrator/update/updater.go, Updater.updateTask: "Consider adding a timeout here"; a down
    # node's tasks are orphaned only after 24 h, dispatcher.go defaultNodeDownPeriod). Swarm has already
    # restarted that slot on a live node. A change of the service's spec outside its task template (a label,
    # added and then removed) makes Swarm start a new updater, which keeps the restarted task and updates
    # the other slots on the live nodes (updater.go, Supervisor.Update, Updater.worker: useExistingTask);
    # nothing the provider reads back is left changed. Tasks created before it no longer count (UpdatedAt
    # moves), so this happens once.
    for pair in $waiting_on; do
        node="${pair%%|*}"
        if [ "$(ask node inspect --format '{{.Status.State}}' "$node")" = "down" ]; then
            echo "carecircle rollout: $service: the update waits on task ${pair#*|}, placed on node $node, which is down; Swarm would wait for that node to return: restarting the update on the live nodes" >&2
            started=$(ask service inspect --format '{{.UpdateStatus.StartedAt}}' "$service")
            ask service update --detach --quiet --no-resolve-image --label-add "com.carecircle.update-restarted=${pair#*|}" "$service" >/dev/null
            # The label's removal must reach a new updater, not coalesce with its addition.
            tries=0
            while [ "$tries" -lt 15 ] && [ "$(ask service inspect --format '{{.UpdateStatus.StartedAt}}' "$service")" = "$started" ]; do
                sleep 1
                tries=$((tries + 1))
            done
            ask service update --detach --quiet --no-resolve-image --label-rm com.carecircle.update-restarted "$service" >/dev/null
            break
        fi
    done
    desired=$(ask service inspect --format '{{if .Spec.Mode.Replicated}}{{.Spec.Mode.Replicated.Replicas}}{{end}}' "$service")
    states=$(ask service ps --filter desired-state=running --format '{{.CurrentState}}' "$service")
    running=$(printf '%s\n' "$states" | grep -c '^Running' || true)
    if [ "$state" != "updating" ] && [ "$running" = "$desired" ]; then
        echo "carecircle rollout: $service: $running/$desired replicas running${state:+, update $state}"
        exit 0
    fi
    if [ "$waited" -ge "$timeout" ]; then
        echo "carecircle rollout: $service: $running/$desired replicas running after ${timeout}s${state:+ (update $state)}" >&2
        ask service ps --no-trunc --format '{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}} {{.Error}}' "$service" | head -10 >&2
        exit 1
    fi
    sleep 2
    waited=$((waited + 2))
done

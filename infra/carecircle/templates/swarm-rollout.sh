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
while :; do
    state=$(docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$service")
    case "$state" in
        rollback_started|rollback_completed|rollback_paused|paused)
            message=$(docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.Message}}{{end}}' "$service")
            echo "carecircle rollout: $service: update $state: $message" >&2
            docker service ps --no-trunc --filter desired-state=shutdown --format '{{.Name}} {{.CurrentState}} {{.Error}}' "$service" | head -5 >&2
            exit 1
            ;;
    esac
    # A node that cannot pull the image rejects the task at once, and Swarm retries forever: say so now.
    # Only tasks created since the spec last changed count: a pull refused before credentials were
    # added (same image, older task) is not this release's. Nanosecond stamps have 19 digits, so
    # awk compares them as strings.
    image=$(docker service inspect --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}' "$service")
    since=$(docker service inspect --format '{{.UpdatedAt.UnixNano}}' "$service")
    tasks=$(docker service ps --quiet --no-trunc "$service")
    pull=""
    if [ -n "$tasks" ]; then
        # shellcheck disable=SC2086 # one argument per task id
        pull=$(docker inspect --type task --format '{{.CreatedAt.UnixNano}}|{{.Spec.ContainerSpec.Image}}|{{.Status.Err}}' $tasks \
            | awk -F'|' -v since="$since" -v image="$image" '($1 "") >= (since "") && $2 == image && $3 ~ /No such image|pull access denied|unauthorized|manifest unknown|not found/ { print $3; exit }')
    fi
    if [ -n "$pull" ]; then
        echo "carecircle rollout: $service: the nodes cannot pull $image: $pull" >&2
        echo "carecircle rollout: a private registry needs its credentials in docker:registryAuth (a secret; docs/scaling.md, \"Registry credentials\")" >&2
        exit 1
    fi
    desired=$(docker service inspect --format '{{if .Spec.Mode.Replicated}}{{.Spec.Mode.Replicated.Replicas}}{{end}}' "$service")
    running=$(docker service ps --filter desired-state=running --format '{{.CurrentState}}' "$service" | grep -c '^Running' || true)
    if [ "$state" != "updating" ] && [ "$running" = "$desired" ]; then
        echo "carecircle rollout: $service: $running/$desired replicas running${state:+, update $state}"
        exit 0
    fi
    if [ "$waited" -ge "$timeout" ]; then
        echo "carecircle rollout: $service: $running/$desired replicas running after ${timeout}s${state:+ (update $state)}" >&2
        docker service ps --no-trunc --format '{{.Name}} {{.DesiredState}} {{.CurrentState}} {{.Error}}' "$service" | head -10 >&2
        exit 1
    fi
    sleep 2
    waited=$((waited + 2))
done

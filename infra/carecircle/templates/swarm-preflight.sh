# Checks what a swarm stack assumes of its cluster before anything is declared on it, and says what
# is wrong: docker:host is a swarm manager; every edge host and every monitoring host is a node of that
# swarm with its label; some node takes the apps. Run by pulumi-command with DOCKER_HOST = docker:host:
#   sh -c "<this script>" preflight edge=EDGE_HOST... monitoring=MONITORING_HOST...
set -eu
fail() { echo "carecircle preflight: $*" >&2; exit 1; }
manager="${DOCKER_HOST:-the local engine}"
control=$(docker info --format '{{.Swarm.ControlAvailable}}' 2>/dev/null) || fail "cannot reach the Docker engine at $manager"
[ "$control" = "true" ] || fail "$manager is not a swarm manager (docker info: Swarm.ControlAvailable=$control); docker:host must be one (docs/scaling.md)"
cluster=$(docker info --format '{{.Swarm.Cluster.ID}}')

node_of() {  # the swarm node id of the engine at $1, which must be in this cluster
    id=$(DOCKER_HOST="$1" docker info --format '{{.Swarm.NodeID}}' 2>/dev/null) || fail "cannot reach the Docker engine at $1"
    [ -n "$id" ] || fail "$1 is not in a swarm: join it (docs/scaling.md)"
    docker node inspect "$id" >/dev/null 2>&1 || fail "$1 is in another swarm than $manager (cluster $cluster)"
    echo "$id"
}
labelled() {  # node $1 has label $2=true
    [ "$(docker node inspect --format "{{index .Spec.Labels \"$2\"}}" "$1")" = "true" ]
}

edges=0
monitoring=0
for arg in "$@"; do
    role="${arg%%=*}"
    host="${arg#*=}"
    id=$(node_of "$host")
    labelled "$id" "carecircle.$role" || fail "$host is not labelled carecircle.$role=true: docker node update --label-add carecircle.$role=true $id"
    case "$role" in edge) edges=$((edges + 1)) ;; *) monitoring=$((monitoring + 1)) ;; esac
done
# Node labels are read from each node's spec: `docker node ls --filter node.label=` needs Docker 23 (API 1.42)
# and older engines ignore it, counting every node.
apps=0
for id in $(docker node ls -q); do
    if labelled "$id" carecircle.apps && [ "$(docker node inspect --format '{{.Spec.Availability}} {{.Status.State}}' "$id")" = "active ready" ]; then
        apps=$((apps + 1))
    fi
done
[ "$apps" -gt 0 ] || fail "no active, ready node is labelled carecircle.apps=true: the api and workers would stay pending (docs/scaling.md)"
echo "carecircle preflight: $manager manages cluster $cluster; $edges edge node(s), $monitoring monitoring node(s), $apps app node(s) checked"

# Applies a CareCircle gateway configuration to a running nginx, in place. Runs inside the gateway
# container (pulumi-command: `docker exec -i <gateway> sh -c "<this script>"`), with the bundle
# (a base64 tar holding next.conf and any TLS files) on stdin:
#   unpack -> nginx -t on the new file -> atomic swap -> graceful reload (nginx -s reload)
#   -> wait until nginx serves the new configuration (its id, at /_gateway/config on the status
#      listener: plain HTTP, never published, so this works when the public listeners take only the
#      PROXY protocol).
# If the test fails, the running configuration is untouched and the script exits 1 (pulumi up fails).
set -eu
cd "${CARECIRCLE_NGINX_DIR:-/etc/nginx/carecircle}"
base64 -d | tar -x -f -
# stub_status answers the nginx exporter beside this gateway, which connects from a network this container
# is on: allow each of their subnets (included by the status listener, so tested by nginx -t below).
network_of() {  # 10.0.1.5/24 -> 10.0.1.0/24
    bits=${1#*/}
    old_ifs=$IFS
    IFS=.
    # shellcheck disable=SC2086
    set -- ${1%/*}
    IFS=$old_ifs
    n=$(( ($1 << 24 | $2 << 16 | $3 << 8 | $4) & (0xffffffff << (32 - bits)) & 0xffffffff ))
    echo "$((n >> 24 & 255)).$((n >> 16 & 255)).$((n >> 8 & 255)).$((n & 255))/$bits"
}
mkdir -p status-allow
for cidr in $(ip -4 -o addr show scope global 2>/dev/null | awk '{print $4}'); do
    echo "allow $(network_of "$cidr");"
done > status-allow/networks.conf
[ -s status-allow/networks.conf ] || echo "carecircle gateway: no network address found (ip -4 addr); stub_status answers 127.0.0.1 only" >&2
if ! nginx -t -q -e stderr -c "$PWD/next.conf"; then
    echo "carecircle gateway: the new configuration failed nginx -t; still serving the previous one" >&2
    rm -f next.conf
    exit 1
fi
config_id=$(sed -n 's/^# carecircle-config-id: //p' next.conf)
check_url=$(sed -n 's/^# carecircle-config-check: //p' next.conf)
mv -f next.conf active.conf
nginx -s reload -e stderr -c "$PWD/active.conf"
# The reload is asynchronous: the master starts new workers, waits 100 ms, then tells the old ones
# to stop accepting; until then both answer. Done once the new id has answered 3 times in a row.
tries=0
confirmed=0
while [ "$confirmed" -lt 3 ]; do
    if [ "$(wget -q -O - "$check_url" 2>/dev/null)" = "$config_id" ]; then
        confirmed=$((confirmed + 1))
    else
        confirmed=0
    fi
    tries=$((tries + 1))
    if [ "$tries" -ge 100 ]; then
        echo "carecircle gateway: reloaded, but nginx does not serve configuration $config_id after 10 s" >&2
        exit 1
    fi
    sleep 0.1
done
# Certificates the active configuration no longer names: old workers loaded theirs already.
for dir in tls/*/; do
    [ -d "$dir" ] || continue
    grep -q "$PWD/$dir" active.conf || rm -rf "$dir"
done
echo "carecircle gateway: configuration $config_id applied and reloaded"

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

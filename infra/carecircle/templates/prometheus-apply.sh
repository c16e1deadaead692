# Applies CareCircle's Prometheus configuration to the running Prometheus, in place. Runs inside the
# Prometheus container (pulumi-command: `docker exec -u 0 -i <prometheus> sh -c "<this script>"`) with
# a base64 tar of prometheus.yml and alerts.yml on stdin:
#   unpack into next/ -> promtool check config (rules included) -> swap -> POST /-/reload.
# If the check fails, the running configuration is untouched and the script exits 1 (pulumi up fails).
set -eu
cd "${CARECIRCLE_PROMETHEUS_DIR:-/etc/prometheus/carecircle}"
rm -rf next && mkdir next
base64 -d | tar -x -f - -C next
if ! promtool check config next/prometheus.yml >&2; then
    echo "carecircle prometheus: the new configuration failed promtool check config; still using the previous one" >&2
    rm -rf next
    exit 1
fi
cp next/alerts.yml alerts.yml.tmp && mv -f alerts.yml.tmp alerts.yml
cp next/prometheus.yml prometheus.yml.tmp && mv -f prometheus.yml.tmp prometheus.yml
rm -rf next
url="http://127.0.0.1:${CARECIRCLE_PROMETHEUS_PORT:-9090}"
# Right after the container is created Prometheus may not listen yet: wait (bounded) before reloading.
tries=0
until wget -q -O /dev/null "$url/-/ready" 2>/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -ge 120 ]; then
        echo "carecircle prometheus: not ready after 60 s; the new configuration is in place for its next start" >&2
        exit 1
    fi
    sleep 0.5
done
# 500 (wget fails) when Prometheus cannot load the files.
wget -q -O /dev/null --post-data='' "$url/-/reload"
echo "carecircle prometheus: configuration applied and reloaded"

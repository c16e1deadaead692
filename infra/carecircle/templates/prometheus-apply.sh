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
wget -q -O /dev/null --post-data='' "http://127.0.0.1:${CARECIRCLE_PROMETHEUS_PORT:-9090}/-/reload"
echo "carecircle prometheus: configuration applied and reloaded"

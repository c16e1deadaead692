# Applies CareCircle's Alertmanager configuration to the running Alertmanager, in place. Runs inside the
# Alertmanager container (pulumi-command: `docker exec -u 0 -i <alertmanager> sh -c "<this script>"`) with
# a base64 tar of alertmanager.yml on stdin:
#   unpack into next/ -> amtool check-config -> readable by Alertmanager's user only -> swap -> POST /-/reload.
# If the check fails, the running configuration is untouched and the script exits 1 (pulumi up fails).
# The file holds the receivers' credentials: amtool's output is never printed.
set -eu
cd "${CARECIRCLE_ALERTMANAGER_DIR:-/etc/alertmanager/carecircle}"
url="http://127.0.0.1:${CARECIRCLE_ALERTMANAGER_PORT:-9093}"
umask 077
rm -rf next && mkdir next
base64 -d | tar -x -f - -C next
if ! amtool check-config next/alertmanager.yml >/dev/null 2>&1; then
    echo "carecircle alertmanager: the new configuration failed amtool check-config (output withheld: the file holds" \
         "receiver credentials); still using the previous one" >&2
    rm -rf next
    exit 1
fi
# Owned by the user Alertmanager runs as (the container's first process), readable by nobody else.
chown "$(stat -c %u:%g /proc/1)" next/alertmanager.yml
chmod 600 next/alertmanager.yml
mv -f next/alertmanager.yml alertmanager.yml
rm -rf next
# Right after the container is created Alertmanager may not listen yet: wait (bounded) before reloading.
tries=0
until wget -q -O /dev/null "$url/-/ready" 2>/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -ge 120 ]; then
        echo "carecircle alertmanager: not ready after 60 s; the new configuration is in place for its next start" >&2
        exit 1
    fi
    sleep 0.5
done
# 500 (wget fails) when Alertmanager cannot load the file.
wget -q -O /dev/null --post-data='' "$url/-/reload"
echo "carecircle alertmanager: configuration applied and reloaded"

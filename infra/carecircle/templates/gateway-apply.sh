# Applies a CareCircle gateway configuration to a running nginx, in place. Runs inside the gateway
# container (pulumi-command: `docker exec -i <gateway> sh -c "<this script>"`), with the bundle
# (a base64 tar holding next.conf and any TLS files) on stdin:
#   unpack -> nginx -t on the new file -> atomic swap -> graceful reload (nginx -s reload).
# If the test fails, the running configuration is untouched and the script exits 1 (pulumi up fails).
set -eu
cd "${CARECIRCLE_NGINX_DIR:-/etc/nginx/carecircle}"
base64 -d | tar -x -f -
if ! nginx -t -q -c "$PWD/next.conf"; then
    echo "carecircle gateway: the new configuration failed nginx -t; still serving the previous one" >&2
    rm -f next.conf
    exit 1
fi
mv -f next.conf active.conf
nginx -s reload -c "$PWD/active.conf"
# Certificates the active configuration no longer names: old workers loaded theirs already.
for dir in tls/*/; do
    [ -d "$dir" ] || continue
    grep -q "$PWD/$dir" active.conf || rm -rf "$dir"
done
echo "carecircle gateway: configuration applied and reloaded"

# Publishes (or cleans) ACME HTTP-01 challenge tokens on a running CareCircle gateway. Runs inside the
# gateway container, like gateway-apply.sh (`docker exec -i <gateway> sh -c "<this script>" -- ACTION`),
# started by the stack's certificate (infra/carecircle/acme.py) on every edge gateway before the CA
# is asked to validate, so whichever edge the CA's request reaches answers it.
#   publish: stdin is a base64 tar of acme/.well-known/acme-challenge/<token> files (the key
#            authorizations: public values) and challenge-responder.conf. A gateway still on its
#            bootstrap configuration (a new stack, a new container) gets the responder (the bootstrap
#            plus the challenge location) and a graceful reload; a gateway on a stack configuration
#            answers from it. Exits 1 when this gateway would not answer.
#   clean:   removes every published token.
set -eu
cd "${CARECIRCLE_NGINX_DIR:-/etc/nginx/carecircle}"
tokens=acme/.well-known/acme-challenge
case "${1:-}" in
publish)
    mkdir -p "$tokens"
    base64 -d | tar -x -f -
    # The workers (an unprivileged user) read the tokens.
    chmod -R a+rX acme
    if grep -q -e '^# carecircle-config-id: ' -e '^# carecircle-acme-responder' active.conf; then
        rm -f challenge-responder.conf
    else
        if ! nginx -t -q -e stderr -c "$PWD/challenge-responder.conf"; then
            echo "carecircle gateway: the ACME challenge responder failed nginx -t" >&2
            exit 1
        fi
        mv -f challenge-responder.conf active.conf
        nginx -s reload -e stderr -c "$PWD/active.conf"
        # Graceful reload: the old workers stop accepting 100 ms after the new ones start.
        sleep 1
        echo "carecircle gateway: on its bootstrap configuration; now answering ACME challenges"
    fi
    if ! grep -q 'location ^~ /.well-known/acme-challenge/' active.conf; then
        echo "carecircle gateway: its configuration does not answer ACME challenges (it predates gatewayTls acme):" \
             "run pulumi up once with the previous gatewayTls, then switch to acme" >&2
        exit 1
    fi
    echo "carecircle gateway: $(ls "$tokens" | wc -l) ACME challenge token(s) published"
    ;;
clean)
    rm -rf "$tokens"
    echo "carecircle gateway: ACME challenge tokens removed"
    ;;
*)
    echo "usage: gateway-challenge.sh publish|clean" >&2
    exit 2
    ;;
esac

# Throwaway PostgreSQL server for tests: sourced by scripts/test.
#   pg_start   -> starts a server in a fresh temp dir on a free loopback port, exports OUTCORE_TEST_PG
#   pg_stop    -> stops it and removes the dir
# PostgreSQL refuses to run as root: when root, initdb/pg_ctl run as the `postgres` user (created by
# the Debian package) in a temp dir that user owns.

pg_find_bindir() {
    local d
    if command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir 2>/dev/null || true)
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"; return 0
    fi
    return 1
}

pg_ensure_installed() {
    if pg_find_bindir >/dev/null; then return 0; fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing PostgreSQL (apt-get install postgresql)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        pg_find_bindir >/dev/null && return 0
    fi
    return 1
}

pg_as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_start() {
    local bindir port user
    bindir=$(pg_find_bindir) || return 1
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
    PG_DIR=$(mktemp -d /tmp/outcore-pg.XXXXXX)
    chmod 755 "$PG_DIR"
    [ "$(id -u)" = 0 ] && chown postgres: "$PG_DIR"
    user=$([ "$(id -u)" = 0 ] && echo postgres || id -un)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    pg_as_owner "$bindir/initdb" -D "$PG_DIR/data" -U "$user" --auth=trust -E UTF8 --no-sync --data-checksums >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log"; return 1; }
    # Two loopback addresses: tests reach the server by a name its certificate does not carry.
    pg_as_owner sh -c "echo 'host all all 127.0.0.0/8 trust' >> '$PG_DIR/data/pg_hba.conf'"
    local ssl_opts=""
    if pg_make_certs "$PG_DIR"; then
        ssl_opts="-c ssl=on -c ssl_cert_file=$PG_DIR/server.crt -c ssl_key_file=$PG_DIR/server.key"
        export OUTCORE_TEST_PG_CA="$PG_DIR/ca.crt"
    fi
    pg_as_owner "$bindir/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
        -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1,127.0.0.2 -c max_connections=300 -c shared_buffers=256MB $ssl_opts" \
        start >/dev/null || { cat "$PG_DIR/server.log"; return 1; }
    PG_BINDIR=$bindir
    export OUTCORE_TEST_PG="postgresql://$user@127.0.0.1:$port/postgres"
    echo "== throwaway PostgreSQL $("$bindir/pg_ctl" --version | awk '{print $3}') at $OUTCORE_TEST_PG (dir $PG_DIR)"
}

# A throwaway CA and a server certificate for 127.0.0.1/localhost, so TLS is tested for real.
pg_make_certs() {
    local d=$1
    command -v openssl >/dev/null 2>&1 || return 1
    (
        cd "$d" || exit 1
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=outcore test CA" \
            -keyout ca.key -out ca.crt
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr
        printf "subjectAltName=IP:127.0.0.1,DNS:localhost\n" > san.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -extfile san.ext -out server.crt
        chmod 600 server.key ca.key
        chmod 644 ca.crt server.crt
        if [ "$(id -u)" = 0 ]; then chown postgres: server.key server.crt; fi
    ) >/dev/null 2>&1
}

pg_stop() {
    if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
        pg_as_owner "$PG_BINDIR/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
        rm -rf "$PG_DIR"
    fi
}

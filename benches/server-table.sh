#!/usr/bin/env bash
# The server table of docs/PERFORMANCE.md (issue 11): `pims bench` against SQLite (200
# devices, then again after 20,000 more accounts) and against PostgreSQL with two replicas
# (database CPU counted, then the replicas alone). Loopback only, every phase bounded.
#
#   cargo build --release && benches/server-table.sh target/release/pims /tmp/bench-out
#
# SECS sets the phase length (default 8); ONLY_PG=1 or NO_PG=1 run one half. PostgreSQL needs
# its server binaries in /usr/lib/postgresql/15/bin (as root the cluster runs as `nobody`).
set -euo pipefail
pims=$(realpath "$1"); out=$2; mkdir -p "$out"
secs=${SECS:-8}
pgbin=/usr/lib/postgresql/15/bin
work=$(mktemp -d)
pids=()
pgdata=
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$pgbin/$1" "${@:2}"; else "$pgbin/$1" "${@:2}"; fi; }
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "$pgdata" ]; then as_pg pg_ctl -D "$pgdata" -m immediate stop >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

config() { # name listen extra-lines
    cat > "$work/$1.toml" <<TOML
listen = "$2"
database_path = "$work/$1.sqlite3"
key_file = "$work/keys.json"
dev_issuer = true
purge_interval_seconds = 0
$3
[[relying_parties]]
id = "demo-rp"
secret = "demo-rp-secret"
[sms_gateway]
kind = "webhook"
url = "http://127.0.0.1:19099/sms"
[limits]
sms_sends_per_hour_per_address = 1000000
TOML
}
serve() { # name port
    "$pims" server --config "$work/$1.toml" 2>"$work/$1.log" &
    pids+=($!)
    for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return; sleep 0.1; done
    echo "server $1 did not start: $(tail -5 "$work/$1.log")"; exit 1
}
bench() { # label args...
    local label=$1; shift
    echo "== $label (load average: $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$out/summary.txt"
    "$pims" bench --sms-listen 127.0.0.1:19099 --concurrency 16 --seconds "$secs" "$@" \
        | tee "$out/$label.txt" >> "$out/summary.txt"
    cat "$out/$label.txt"
}

if [ -z "${ONLY_PG:-}" ]; then
    config sqlite 127.0.0.1:18080 ""
    serve sqlite 18080
    sqlite=${pids[-1]}
    bench sqlite-200 --url http://127.0.0.1:18080 --server-pid "$sqlite" --devices 200
    bench sqlite-20200 --url http://127.0.0.1:18080 --server-pid "$sqlite" --devices 200 \
        --accounts 20000
fi
[ -n "${NO_PG:-}" ] && exit 0

pgdata=$work/pg
chmod 755 "$work"; mkdir -p "$pgdata" "$work/sock"
[ "$(id -u)" = 0 ] && chown nobody "$pgdata" "$work/sock"
as_pg initdb -D "$pgdata" -U pims -A trust >/dev/null
cat >> "$pgdata/postgresql.conf" <<PG
listen_addresses = '127.0.0.1'
port = 15432
unix_socket_directories = '$work/sock'
synchronous_commit = off
max_connections = 50
PG
as_pg pg_ctl -D "$pgdata" -l "$work/sock/pg.log" -w start >/dev/null
as_pg createdb -h 127.0.0.1 -p 15432 -U pims pims
url='database_url = "postgres://pims@127.0.0.1:15432/pims"
database_pool_size = 8'
config pg-a 127.0.0.1:18081 "$url"; serve pg-a 18081; a=${pids[-1]}
config pg-b 127.0.0.1:18082 "$url"; serve pg-b 18082; b=${pids[-1]}
postmaster=$(head -1 "$pgdata/postmaster.pid")
replicas=(--url http://127.0.0.1:18081 --url http://127.0.0.1:18082 --devices 200)
bench pg-200 "${replicas[@]}" --server-pid "$a" --server-pid "$b" --server-pid "$postmaster"
bench pg-200-replicas-only "${replicas[@]}" --server-pid "$a" --server-pid "$b"

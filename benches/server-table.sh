#!/usr/bin/env bash
# The server table of docs/PERFORMANCE.md (issues 11 and 19): `pims bench` against SQLite
# (200 devices and a car, then again after ACCOUNTS more accounts), against PostgreSQL with one
# replica and with two (database CPU counted; then the two replicas alone), and the ratio table: every
# operation on PostgreSQL against SQLite, and SQLite with ACCOUNTS more accounts against 200.
# Each run ends with the floor (`pims bench` times the bare OPAQUE login, one ECDSA verify and
# two small transactions in the same run). Loopback only, every phase bounded.
#
#   cargo build --release && benches/server-table.sh target/release/pims /tmp/bench-out
#
# SECS sets the phase length (default 8); ACCOUNTS the larger table (default 100000: enrolling
# them through the API takes about 10 minutes on 2 cores; 0 skips that run); ONLY_PG=1 or
# NO_PG=1 run one half. PostgreSQL needs its server binaries in /usr/lib/postgresql/15/bin (as
# root the cluster runs as `nobody`).
set -euo pipefail
pims=$(realpath "$1"); out=$2; mkdir -p "$out"
secs=${SECS:-8}
accounts=${ACCOUNTS:-100000}
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
    # With a car in the bench process: the signed-command phases (server CPU per command).
    config sqlite 127.0.0.1:18080 "[commands]
[[commands.vehicles]]
vin = \"VR3UPHNKSKT101603\"
url = \"http://127.0.0.1:18490\""
    serve sqlite 18080
    sqlite=${pids[-1]}
    bench sqlite-200 --url http://127.0.0.1:18080 --server-pid "$sqlite" --devices 200 \
        --car-listen 127.0.0.1:18490
    if [ "$accounts" != 0 ]; then
        bench sqlite-more --url http://127.0.0.1:18080 --server-pid "$sqlite" --devices 200 \
            --accounts "$accounts"
    fi
fi

# The ratio table: server (and database) CPU per operation of each run, and each run against
# sqlite-200; ops are the rows every run has.
ratios() {
    echo
    echo "== server + database CPU per operation, µs (and × sqlite-200)"
    local runs=() r
    for r in sqlite-200 sqlite-more pg-1 pg-2 pg-2-replicas-only; do
        [ -f "$out/$r.txt" ] && runs+=("$r")
    done
    awk -v runs="${runs[*]}" -v dir="$out" '
        BEGIN {
            n = split(runs, names, " ")
            for (i = 1; i <= n; i++) {
                file = dir "/" names[i] ".txt"
                while ((getline line < file) > 0) {
                    k = split(line, f, " ")
                    if (k < 9 || f[k - 6] !~ /^[0-9]+$/ || f[k - 1] !~ /^[0-9]+$/) continue
                    op = f[1]; for (j = 2; j <= k - 8; j++) op = op " " f[j]
                    if (!(op in seen)) { seen[op] = 1; ops[++m] = op }
                    cpu[names[i], op] = f[k - 1]
                }
            }
            printf "%-18s", "operation"
            for (i = 1; i <= n; i++) printf " %20s", names[i]
            print ""
            for (o = 1; o <= m; o++) {
                op = ops[o]; printf "%-18s", op
                base = cpu["sqlite-200", op]
                for (i = 1; i <= n; i++) {
                    v = cpu[names[i], op]
                    if (v == "") { printf " %20s", "-"; continue }
                    if (base > 0 && names[i] != "sqlite-200")
                        printf " %12s (%4.2f×)", v, v / base
                    else printf " %20s", v
                }
                print ""
            }
        }' | tee -a "$out/summary.txt"
    for r in "${runs[@]}"; do
        grep "^floor" "$out/$r.txt" | sed "s/^floor/  $r floor/"
    done | tee -a "$out/summary.txt"
}

if [ -n "${NO_PG:-}" ]; then ratios; exit 0; fi

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
postmaster=$(head -1 "$pgdata/postmaster.pid")
url='database_url = "postgres://pims@127.0.0.1:15432/pims"
database_pool_size = 8'
# One replica on its own database, then two replicas sharing another.
as_pg createdb -h 127.0.0.1 -p 15432 -U pims pims1
config pg-1 127.0.0.1:18083 "${url/pims\"/pims1\"}"; serve pg-1 18083; one=${pids[-1]}
bench pg-1 --url http://127.0.0.1:18083 --devices 200 --server-pid "$one" \
    --server-pid "$postmaster"
kill -TERM "$one"
as_pg createdb -h 127.0.0.1 -p 15432 -U pims pims
config pg-a 127.0.0.1:18081 "$url"; serve pg-a 18081; a=${pids[-1]}
config pg-b 127.0.0.1:18082 "$url"; serve pg-b 18082; b=${pids[-1]}
replicas=(--url http://127.0.0.1:18081 --url http://127.0.0.1:18082 --devices 200)
bench pg-2 "${replicas[@]}" --server-pid "$a" --server-pid "$b" --server-pid "$postmaster"
bench pg-2-replicas-only "${replicas[@]}" --server-pid "$a" --server-pid "$b"
ratios

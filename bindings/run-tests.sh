#!/usr/bin/env bash
# Binding tests: build the Python wheel with maturin (the release library and its Python module),
# install it, check the library's size, generate the Kotlin and Swift bindings from that same
# library with the workspace's uniffi-bindgen (crates/pims-bindgen), start a PIMS server on loopback
# and simulated cars (`pims vehicle`, one per remote-command flow: a pairing code pairs one key),
# then run the Kotlin program, the README's Python example (bindings/readme-python.sh) and the
# pytest suite against them. Called by .ci/run after cargo test.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

eval "$(bindings/install-deps.sh)"

WORK="$(mktemp -d)"
SERVER_PID=""
CAR_PIDS=""
cleanup() {
    local status=$?
    if [ "$status" -ne 0 ]; then
        # What the server and the cars said last, before their files go.
        for log in "$WORK"/server/log "$WORK"/cars/*.log; do
            [ -s "$log" ] && { echo "--- tail of $log" >&2; tail -n 20 "$log" >&2; }
        done
    fi
    for pid in $CAR_PIDS $SERVER_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "== building the Python wheel (maturin: the library in profile release-ffi, its Python module)"
# The wheel's library is the one every binding test uses: one release build, in target/release-ffi.
"$PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps -w "$WORK/wheel" ./bindings/python
"$PYTHON" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$WORK"/wheel/pims_sdk-*.whl
"$PYTHON" -m zipfile -e "$WORK"/wheel/pims_sdk-*.whl "$WORK/wheel/contents"
LIB="$WORK/wheel/contents/pims_sdk/_native/libpims_ffi.so"
echo "== building the server"
# The generator: maturin has just built it (dev profile) with `cargo run --bin uniffi-bindgen`
# from the workspace root, which finds it in crates/pims-bindgen (a default member; UniFFI's
# dependencies only, none of the SDK's).
# The server in the dev profile: cargo test --workspace has built it already (dependencies at
# opt-level 2), so this is free in CI. PIMS_SERVER_BIN may name another build of `pims`.
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BINDGEN="$TARGET_DIR/debug/uniffi-bindgen"
[ -x "$BINDGEN" ] || { echo "maturin did not build $BINDGEN" >&2; exit 1; }
SERVER_BIN="${PIMS_SERVER_BIN:-}"
if [ -z "$SERVER_BIN" ]; then
    cargo build --bin pims
    SERVER_BIN="$TARGET_DIR/debug/pims"
fi

echo "== size of the stripped release library"
strip -o "$WORK/libpims_ffi.so" "$LIB"
SIZE=$(stat -c %s "$WORK/libpims_ffi.so")
echo "libpims_ffi.so stripped: $SIZE bytes ($(awk "BEGIN{printf \"%.2f\", $SIZE/1048576}") MiB)"
if [ "$SIZE" -ge $((4 * 1024 * 1024)) ]; then
    echo "the stripped library must stay under 4 MiB" >&2
    exit 1
fi

echo "== generating bindings"
for language in kotlin swift; do
    "$BINDGEN" generate --library "$LIB" --no-format --language "$language" --out-dir "$WORK/gen/$language" >/dev/null
done
for f in kotlin/com/pims/sdk/ffi/pims_ffi.kt swift/PimsFfi.swift swift/PimsFfiFFI.h swift/PimsFfiFFI.modulemap; do
    [ -s "$WORK/gen/$f" ] || { echo "missing generated file $f" >&2; exit 1; }
done
echo "swift: generated $(ls "$WORK/gen/swift" | tr '\n' ' ')+ wrapper bindings/swift/Sources/Pims/Pims.swift"
if command -v swiftc >/dev/null 2>&1; then
    swiftc -typecheck -module-name PimsFfi -Xcc -fmodule-map-file="$WORK/gen/swift/PimsFfiFFI.modulemap" \
        "$WORK/gen/swift/PimsFfi.swift" bindings/swift/Sources/Pims/Pims.swift
else
    echo "swift: no Swift toolchain on this machine; generation checked, compilation not"
fi

# The Kotlin and Swift examples must stay the reference's text, byte for byte.
SEED="$ROOT/../shared/seed/000_af45fcdab564c29b.txt"
if [ -f "$SEED" ]; then
    verbatim() { awk '/reference example, verbatim/{f=1;next}/end of reference example/{f=0}f' "$1"; }
    reference() { grep -n -A9 "$1" "$SEED" | head -10 | sed -E 's/^[0-9]+[:-]//; s/^    //'; }
    diff <(reference '^    pims.set("pims.authentication.enrollment",') \
         <(verbatim bindings/kotlin/test/ReferenceExample.kt | head -10)
    diff <(reference '^    pims.set(api: "pims.authentication.enrollment",') \
         <(verbatim bindings/swift/Examples/ReferenceExample.swift)
    echo "reference examples: Kotlin and Swift copies match the reference page"
fi

echo "== starting a PIMS server and simulated cars on loopback"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
mkdir -p "$WORK/server" "$WORK/devices" "$WORK/cars"
# One car per remote-command flow (NAME:VIN), each paired by one device with the code it shows;
# the tests find theirs in PIMS_CAR_<NAME> ("VIN URL PAIRING-CODE"). The server reaches the
# PY_ONE_CALL car through a relay its test runs on PIMS_RELAY_PY_ONE_CALL (host:port), which
# records the proofs as the car receives them.
CARS="PY_REFERENCE:VR3UPHNKSKT101611 PY_ONE_CALL:VR3UPHNKSKT101612 KT_REFERENCE:VR3UPHNKSKT101613 KT_ONE_CALL:VR3UPHNKSKT101614"
declare -A CAR_PORT
VEHICLES=""
for car in $CARS; do
    CAR_PORT[$car]=$(free_port)
    reach=${CAR_PORT[$car]}
    if [ "${car%%:*}" = PY_ONE_CALL ]; then
        reach=$(free_port)
        export PIMS_RELAY_PY_ONE_CALL="127.0.0.1:$reach"
    fi
    VEHICLES+="
[[commands.vehicles]]
vin = \"${car#*:}\"
url = \"http://127.0.0.1:$reach\"
"
done
cat > "$WORK/server/config.toml" <<TOML
listen = "127.0.0.1:$PORT"
database_path = "$WORK/server/pims.sqlite3"
key_file = "$WORK/server/keys.json"
sms_outbox = "$WORK/server/outbox.jsonl"
sms_domain = "bindings.test"
dev_issuer = true

[[relying_parties]]
id = "bindings-test"
secret = "bindings-test-secret"

# Every suite here sends its SMS from this one address: no test is about that limit.
[limits]
sms_sends_per_hour_per_address = 1000

# The command service relays to the simulated cars below (audience: pims-commands).
[commands]
$VEHICLES
TOML
"$SERVER_BIN" server --config "$WORK/server/config.toml" 2>"$WORK/server/log" &
SERVER_PID=$!
for _ in $(seq 1 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/healthz', timeout=1)" 2>/dev/null; then
        break
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server/log" >&2; exit 1; }
    sleep 0.2
done
# The cars, after the server: each fetches its PIN co-signing key at first start.
for car in $CARS; do
    name=${car%%:*} vin=${car#*:} port=${CAR_PORT[$car]}
    "$SERVER_BIN" vehicle --vin "$vin" --listen "127.0.0.1:$port" --data "$WORK/cars/$name.sqlite3" \
        --server "http://127.0.0.1:$PORT" >"$WORK/cars/$name.out" 2>"$WORK/cars/$name.log" &
    CAR_PIDS+=" $!"
done
for car in $CARS; do
    name=${car%%:*} vin=${car#*:} port=${CAR_PORT[$car]}
    code=""
    for _ in $(seq 1 100); do
        code=$(sed -n 's/^pairing code: //p' "$WORK/cars/$name.out")
        [ -n "$code" ] && break
        sleep 0.1
    done
    if [ -z "$code" ]; then
        echo "car $name showed no pairing code" >&2
        cat "$WORK/cars/$name.out" "$WORK/cars/$name.log" >&2
        exit 1
    fi
    export "PIMS_CAR_$name=$vin http://127.0.0.1:$port $code"
done
echo "cars: $(for car in $CARS; do printf '%s ' "${car#*:}"; done)(one pairing code each)"
export PIMS_SERVER_URL="http://127.0.0.1:$PORT"
export PIMS_GOLDEN_VECTORS="$ROOT/crates/pims-command/tests/vectors/golden.json"
export PIMS_OUTBOX="$WORK/server/outbox.jsonl"
export PIMS_SMS_DOMAIN="bindings.test"
export PIMS_RP_CREDENTIALS="bindings-test:bindings-test-secret"

echo "== Kotlin on the JVM"
"$KOTLINC" -nowarn -include-runtime -cp "$JNA_JAR" -d "$WORK/kotlin-test.jar" \
    "$WORK/gen/kotlin" bindings/kotlin/src bindings/kotlin/test 2>&1 | grep -v '^warning:' || true
[ -f "$WORK/kotlin-test.jar" ] || { echo "kotlin compilation failed" >&2; exit 1; }
mkdir -p "$WORK/devices/kotlin"
PIMS_DATA_DIR="$WORK/devices/kotlin" java -Djna.library.path="$(dirname "$LIB")" \
    -cp "$WORK/kotlin-test.jar:$JNA_JAR" EnrollmentTestKt

echo "== the README's Python example, as written (the installed wheel)"
bindings/readme-python.sh "$PYTHON" "$SERVER_BIN"

echo "== Python (the installed wheel, away from the source tree)"
(cd "$WORK" && "$PYTHON" -c 'import pims_sdk, sys; assert "site-packages" in pims_sdk.__file__, pims_sdk.__file__; print("pims_sdk from", pims_sdk.__file__)')
set +e
(cd bindings/python/tests && "$PYTHON" -m pytest -q -p no:cacheprovider .)
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no test: that is a failure here" >&2
    exit 1
fi
exit "$status"

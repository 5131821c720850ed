#!/usr/bin/env bash
# The README's Python example, run as written against a live server: the ```python block after the
# marker comment saved as enroll.py, then the ```sh block after it (which mints a token with
# `pims dev-token` and runs the script). Called by bindings/run-tests.sh with the wheel installed
# and its server running; fails when the README drifts from what works.
#
# Usage: bindings/readme-python.sh PYTHON PIMS_BIN
# Environment: PIMS_SERVER_URL (the live server, which has dev_issuer = true) and PIMS_OUTBOX (its
# SMS outbox). Substituted, because the test server is not the README's development server: its
# URL for http://127.0.0.1:8080, its outbox for target/pims-dev/sms-outbox.jsonl, PIMS_BIN for
# `cargo run --release --` and PYTHON (the virtualenv with the wheel) for `python3`.
set -euo pipefail
PYTHON="$1"
PIMS_BIN="$2"
: "${PIMS_SERVER_URL:?}" "${PIMS_OUTBOX:?}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MARKER='<!-- bindings/run-tests.sh runs this block and the next one as written (bindings/readme-python.sh) -->'

DIR="$(mktemp -d)"
trap 'rm -rf "$DIR"' EXIT

# The n-th fenced block (1-based) of language $2 after the marker.
block() {
    awk -v marker="$MARKER" -v lang="$1" -v want="$2" '
        index($0, marker) == 1 { armed = 1; next }
        armed && !inside && $0 == "```" lang { n++; inside = 1; next }
        inside && $0 == "```" { inside = 0; if (n == want) exit; next }
        inside && n == want { print }
    ' "$ROOT/README.md"
}
# Replaces $2 by $3 in the file $1, failing when $2 is not there (the README changed).
substitute() {
    "$PYTHON" - "$@" <<'PY'
import sys
path, old, new = sys.argv[1:]
text = open(path).read()
if old not in text:
    sys.exit(f"README example: {old!r} not found in\n{text}")
open(path, "w").write(text.replace(old, new))
PY
}

block python 1 > "$DIR/enroll.py"
block sh 1 > "$DIR/run.sh"
[ -s "$DIR/enroll.py" ] && [ -s "$DIR/run.sh" ] || { echo "README.md: no Python example after the marker" >&2; exit 1; }
substitute "$DIR/enroll.py" "http://127.0.0.1:8080" "$PIMS_SERVER_URL"
substitute "$DIR/enroll.py" "target/pims-dev/sms-outbox.jsonl" "$PIMS_OUTBOX"
substitute "$DIR/run.sh" "cargo run --release --" "'$PIMS_BIN'"
substitute "$DIR/run.sh" "python3 " "'$PYTHON' "
grep -q "enroll.py" "$DIR/run.sh" || { echo "README.md: the command no longer runs enroll.py" >&2; exit 1; }

# `pims dev-token` takes the server from PIMS_SERVER_URL (exported by the caller).
(cd "$DIR" && sh -e run.sh) > "$DIR/out.txt"
cat "$DIR/out.txt"
"$PYTHON" - "$DIR/out.txt" <<'PY'
import ast, sys
messages = [ast.literal_eval(line) for line in open(sys.argv[1]) if line.strip()]
statuses = [m["status"] for m in messages]
assert len(messages) == 6 and statuses == ["SUCCEEDED"] * 6, f"README Python example: {statuses}"
assert messages[-1]["result"]["otp"], messages[-1]
print("README Python example: 6 calls SUCCEEDED, OTP issued")
PY

#!/usr/bin/env bash
# Installs what the binding tests need on a fresh Debian machine (root): JNA from Debian, the
# Kotlin compiler from npm, pytest and cryptography from PyPI (in a virtualenv). Idempotent.
# Prints the environment to use: KOTLINC, JNA_JAR, PYTHON.
set -euo pipefail

KOTLIN_VERSION=2.4.20
TOOLS="${PIMS_BINDING_TOOLS:-/opt/pims-binding-tools}"
mkdir -p "$TOOLS"

JNA_JAR=/usr/share/java/jna.jar
if [ ! -f "$JNA_JAR" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq libjna-java >&2
fi

if ! java -version >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq openjdk-17-jdk-headless >&2
fi

KOTLINC="$TOOLS/kotlin/node_modules/kotlin-compiler/bin/kotlinc"
if [ ! -x "$KOTLINC" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq npm >&2
    fi
    mkdir -p "$TOOLS/kotlin"
    npm install --prefix "$TOOLS/kotlin" --no-audit --no-fund --silent "kotlin-compiler@$KOTLIN_VERSION" >&2
fi

VENV="$TOOLS/venv"
if [ ! -x "$VENV/bin/python" ]; then
    if ! python3 -m venv "$VENV" >&2; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq python3-venv >&2
        python3 -m venv "$VENV" >&2
    fi
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check pytest cryptography >&2

echo "KOTLINC=$KOTLINC"
echo "JNA_JAR=$JNA_JAR"
echo "PYTHON=$VENV/bin/python"

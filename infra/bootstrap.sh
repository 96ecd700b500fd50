#!/usr/bin/env bash
# Set up selftrain's virtual environment in .venv (idempotent: reinstalls only when the pins change).
# Needs Python 3.11 and pip; everything else comes from PyPI, pinned in infra/constraints.txt.
# `--test` also installs the Debian packages the integration tests start or drive (tests/integration):
# PostgreSQL for the server stack (infra/start-stack.sh) and Chromium for the Prefect UI test, only when
# missing (about a minute; needs root or sudo), and converts the packaged Gemma model into the cache once.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--test" ]; then
    need=()
    ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
    command -v chromium >/dev/null 2>&1 || need+=(chromium)
    if [ "${#need[@]}" -gt 0 ]; then
        SUDO=""
        [ "$(id -u)" = 0 ] || SUDO="sudo"
        echo "bootstrap: apt-get install ${need[*]}"
        $SUDO apt-get update -q
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
    fi
fi

PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv with $("$PY" --version)"
    "$PY" -m venv .venv
fi

stamp=.venv/.selftrain-pins
want="$(cat pyproject.toml infra/constraints.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "bootstrap: installing pinned dependencies (about 3 minutes the first time)"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -c infra/constraints.txt -e '.[dev]'
    echo "$want" > "$stamp"
fi
if [ "${1:-}" = "--test" ]; then
    # The packaged Gemma's one-time conversion (~70 s) belongs to set-up, like the pip install above: the
    # tests then load it through the cache as `selftrain run` does after its first run.
    .venv/bin/python -c 'from models.gemma import ensure_packaged_gemma as e; from tasks.policy import cache_root as c
print("bootstrap: packaged Gemma ready in", e(c() / "models", progress=lambda line: print("bootstrap:", line)))'
fi
echo "bootstrap: ready (.venv/bin/selftrain)"

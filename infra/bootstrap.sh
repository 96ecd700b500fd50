#!/usr/bin/env bash
# Set up selftrain's virtual environment in .venv (idempotent: reinstalls only when the pins change).
# Needs Python 3.11 and pip; everything else comes from PyPI, pinned in infra/constraints.txt.
# `--test` also installs the test and lint tools (the `dev` extra), the Debian packages the integration
# tests start or drive (tests/integration): PostgreSQL for the server stack (infra/start-stack.sh) and
# Chromium for the Prefect UI test, only when missing (about a minute; needs root or sudo), and converts
# the packaged Gemma model into the cache once.
# It prints a few lines; the full apt and pip output goes to .venv-setup.log (named when something fails).
set -euo pipefail
cd "$(dirname "$0")/.."
LOG="$PWD/.venv-setup.log"
: > "$LOG"
started=$SECONDS

failed() {  # show the log's tail and where it is, then stop
    echo "bootstrap: failed: $*" >&2
    tail -n 25 "$LOG" >&2
    echo "bootstrap: the full log is $LOG" >&2
    exit 1
}

quietly() {  # run a command with its output in the log; on failure say so
    "$@" >>"$LOG" 2>&1 || failed "$@"
}

apt_quietly() {  # quietly, waiting up to 5 minutes for a lock another apt run holds (a second bootstrap, say)
    local try
    for try in $(seq 60); do
        "$@" >>"$LOG" 2>&1 && return 0
        tail -n 3 "$LOG" | grep -q -e 'Could not get lock' -e 'Unable to lock' || break
        [ "$try" = 1 ] && echo "bootstrap: another apt run holds its lock; waiting"
        sleep 5
    done
    failed "$@"
}

extra=""
if [ "${1:-}" = "--test" ]; then
    extra="[dev]"
    need=()
    ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
    command -v chromium >/dev/null 2>&1 || need+=(chromium)
    if [ "${#need[@]}" -gt 0 ]; then
        SUDO=""
        [ "$(id -u)" = 0 ] || SUDO="sudo"
        echo "bootstrap: installing Debian packages: ${need[*]} (about a minute)"
        apt_quietly $SUDO apt-get update -q
        apt_quietly env DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
    fi
fi

PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    rm -rf .venv  # none yet, or one a failed attempt left without pip
    echo "bootstrap: creating .venv with $("$PY" --version)"
    if ! "$PY" -m venv .venv >>"$LOG" 2>&1; then
        # Debian's Python without its python3.11-venv package has no ensurepip: make the venv without pip,
        # then the Python's own pip installs pip into it.
        rm -rf .venv
        quietly "$PY" -m venv --without-pip .venv
        quietly "$PY" -m pip --python .venv/bin/python install --quiet pip
    fi
fi

stamp=.venv/.selftrain-pins
want="$(cat pyproject.toml infra/constraints.txt | sha256sum | cut -d' ' -f1)$extra"
have="$(cat "$stamp" 2>/dev/null || true)"
# The plain install is part of the [dev] one: after `--test`, a plain run has nothing to do.
if [ "$have" != "$want" ] && [ "$have" != "${want}[dev]" ]; then
    echo "bootstrap: installing the pinned stack into .venv (about 3 minutes the first time; log: $LOG)"
    quietly .venv/bin/python -m pip install --quiet --upgrade pip
    quietly env PIP_NO_WARN_SCRIPT_LOCATION=1 .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        -c infra/constraints.txt -e ".$extra"
    echo "$want" > "$stamp"
fi
if [ "${1:-}" = "--test" ]; then
    # The packaged Gemma's one-time conversion (80-160 s by machine) belongs to set-up, like the pip install above: the
    # tests then load it through the cache as `selftrain run` does after its first run.
    .venv/bin/python -W ignore -c 'from models.gemma import ensure_packaged_gemma as e; from tasks.base_model import cache_root as c
print("bootstrap: packaged Gemma ready in", e(c() / "models", progress=lambda line: print("bootstrap:", line)))' 2>>"$LOG"
fi
echo "bootstrap: ready in $((SECONDS - started)) s: .venv/bin/selftrain"

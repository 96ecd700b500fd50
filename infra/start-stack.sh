#!/usr/bin/env bash
# Start selftrain's server stack without Docker: PostgreSQL (Debian's package), a Prefect server and an
# MLflow server (both from the project's .venv) keeping their state in PostgreSQL. The same stack as
# infra/compose.yaml, for a Debian machine with no container engine.
#
#   bash infra/start-stack.sh start [STATE_DIR]   # initdb on first use, start all three, wait for health
#   bash infra/start-stack.sh stop  [STATE_DIR]   # stop what `start` started (by the pids it recorded)
#   bash infra/start-stack.sh env   [STATE_DIR]   # print the variables to export
#
# STATE_DIR (default .stack) holds the database cluster, the MLflow artifact store, logs, pid files and
# env.sh. Ports come from PG_PORT (55432), PREFECT_PORT (4200) and MLFLOW_PORT (5000); everything listens
# on 127.0.0.1 only. Needs: apt-get install -y postgresql; bash infra/bootstrap.sh.
#
# PostgreSQL refuses to run as root: when started by root, the cluster belongs to the `postgres` user
# (made by Debian's package) and its commands run through runuser.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
cmd="${1:-start}"
STATE="$(mkdir -p "${2:-$REPO/.stack}" && cd "${2:-$REPO/.stack}" && pwd)"
PG_PORT="${PG_PORT:-55432}"
PREFECT_PORT="${PREFECT_PORT:-4200}"
MLFLOW_PORT="${MLFLOW_PORT:-5000}"
HOST=127.0.0.1
DB_USER=selftrain
WAIT_SECONDS="${WAIT_SECONDS:-180}"

say() { echo "start-stack: $*" >&2; }
die() { say "error: $*"; exit 1; }

pg_bin() {
    # Debian keeps the server binaries out of PATH, under /usr/lib/postgresql/<major>/bin.
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -z "$dir" ] && command -v pg_ctl >/dev/null 2>&1; then
        dir="$(dirname "$(readlink -f "$(command -v pg_ctl)")")"
    fi
    [ -n "$dir" ] && [ -x "$dir/pg_ctl" ] || die "PostgreSQL not found: apt-get install -y postgresql"
    echo "$dir"
}

as_pg() {
    # Run a PostgreSQL command as the cluster's owner (the `postgres` user when we are root).
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pgdata() {
    # The cluster lives in STATE_DIR unless the `postgres` user cannot reach it (root-only temp folders,
    # e.g. pytest's); then in a folder of its own under /tmp, recorded in STATE_DIR/pgdata.path.
    if [ -f "$STATE/pgdata.path" ]; then
        cat "$STATE/pgdata.path"
        return
    fi
    local dir="$STATE/postgres"
    if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$STATE"; then
        dir="$(mktemp -d /tmp/selftrain-pg.XXXXXX)/data"
    fi
    echo "$dir" > "$STATE/pgdata.path"
    echo "$dir"
}

password() {
    if [ ! -s "$STATE/pg.password" ]; then
        (umask 077 && "$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(16))' > "$STATE/pg.password")
    fi
    cat "$STATE/pg.password"
}

write_env() {
    local pw
    pw="$(password)"
    cat > "$STATE/env.sh" <<EOF
# Source this file to point selftrain, prefect and mlflow at the stack in $STATE.
export PREFECT_API_URL=http://$HOST:$PREFECT_PORT/api
export MLFLOW_TRACKING_URI=http://$HOST:$MLFLOW_PORT
export PREFECT_SERVER_ANALYTICS_ENABLED=false
# Databases (for psql or a second server): user $DB_USER on $HOST:$PG_PORT
export SELFTRAIN_PREFECT_DB=postgresql+asyncpg://$DB_USER:$pw@$HOST:$PG_PORT/prefect
export SELFTRAIN_MLFLOW_DB=postgresql+psycopg://$DB_USER:$pw@$HOST:$PG_PORT/mlflow
EOF
    chmod 600 "$STATE/env.sh"
}

start_postgres() {
    local bin data pw
    bin="$(pg_bin)"
    data="$(pgdata)"
    pw="$(password)"
    if [ ! -f "$data/PG_VERSION" ]; then
        say "initdb into $data"
        mkdir -p "$data"
        local pwfile
        pwfile="$(dirname "$data")/.initdb-pw"
        (umask 077 && echo "$pw" > "$pwfile")
        if [ "$(id -u)" = 0 ]; then chown -R postgres: "$(dirname "$data")"; fi
        # Socket connections (socket in the private data folder) are trusted; TCP needs the password.
        as_pg "$bin/initdb" -D "$data" -U "$DB_USER" --pwfile="$pwfile" --auth-local=trust \
            --auth-host=scram-sha-256 -E UTF8 --locale=C >"$STATE/logs/initdb.log" 2>&1 \
            || { cat "$STATE/logs/initdb.log" >&2; die "initdb failed"; }
        rm -f "$pwfile"
    fi
    if as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        say "postgres already running ($data)"
    else
        # The log goes in the data folder: the postgres user may not write to STATE_DIR.
        as_pg "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start \
            -o "-c listen_addresses=$HOST -p $PG_PORT -k $data" >/dev/null \
            || { tail -n 20 "$data/server.log" >&2; die "postgres did not start (port $PG_PORT busy?)"; }
    fi
    local db
    for db in prefect mlflow; do
        if ! as_pg "$bin/psql" -h "$data" -p "$PG_PORT" -U "$DB_USER" -d postgres -tAc \
            "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1; then
            as_pg "$bin/createdb" -h "$data" -p "$PG_PORT" -U "$DB_USER" "$db"
        fi
    done
    say "postgres on $HOST:$PG_PORT (databases prefect, mlflow)"
}

launch() {
    # launch NAME CMD...: run in a new session (its own process group), log and pid in STATE_DIR.
    local name="$1"
    shift
    if [ -f "$STATE/$name.pid" ] && kill -0 "$(cat "$STATE/$name.pid")" 2>/dev/null; then
        say "$name already running (pid $(cat "$STATE/$name.pid"))"
        return
    fi
    setsid "$@" >"$STATE/logs/$name.log" 2>&1 < /dev/null &
    echo $! > "$STATE/$name.pid"
}

wait_http() {
    # wait_http NAME URL: poll until the URL answers 200, or fail with the server's log tail.
    local name="$1" url="$2"
    "$VENV/bin/python" - "$url" "$WAIT_SECONDS" "$STATE/$name.pid" <<'EOF' || { tail -n 30 "$STATE/logs/$name.log" >&2; die "$name did not become healthy at $2"; }
import os, sys, time, urllib.request
url, limit, pidfile = sys.argv[1], float(sys.argv[2]), sys.argv[3]
pid = int(open(pidfile).read())
deadline = time.time() + limit
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)  # the server exited
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit(1)
EOF
}

start() {
    [ -x "$VENV/bin/prefect" ] || die "no $VENV/bin/prefect: run bash infra/bootstrap.sh first"
    mkdir -p "$STATE/logs" "$STATE/mlartifacts" "$STATE/prefect-home"
    start_postgres
    write_env
    local pw
    pw="$(password)"
    launch prefect env PREFECT_HOME="$STATE/prefect-home" PREFECT_SERVER_ANALYTICS_ENABLED=false \
        PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://$DB_USER:$pw@$HOST:$PG_PORT/prefect" \
        PREFECT_UI_API_URL="http://$HOST:$PREFECT_PORT/api" \
        "$VENV/bin/prefect" server start --host "$HOST" --port "$PREFECT_PORT" --analytics-off
    # MLflow server jobs (GenAI evaluation features) are off unless asked for: selftrain uses none, and with them on the
    # server keeps six huey consumer processes running (measured: each ~1.8% of a core, all the time).
    launch mlflow env MLFLOW_ALLOW_FILE_STORE=false \
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}" "$VENV/bin/mlflow" server \
        --backend-store-uri "postgresql+psycopg://$DB_USER:$pw@$HOST:$PG_PORT/mlflow" \
        --artifacts-destination "$STATE/mlartifacts" --serve-artifacts \
        --host "$HOST" --port "$MLFLOW_PORT" --workers 1
    wait_http prefect "http://$HOST:$PREFECT_PORT/api/health"
    wait_http mlflow "http://$HOST:$MLFLOW_PORT/health"
    say "Prefect UI and API: http://$HOST:$PREFECT_PORT  (logs: $STATE/logs/prefect.log)"
    say "MLflow UI and API:  http://$HOST:$MLFLOW_PORT  (artifacts: $STATE/mlartifacts)"
    say "export these (or: source $STATE/env.sh):"
    grep '^export PREFECT_API_URL\|^export MLFLOW_TRACKING_URI' "$STATE/env.sh"
}

stop() {
    local name pid pids=()
    for name in mlflow prefect; do
        if [ -f "$STATE/$name.pid" ]; then
            pid="$(cat "$STATE/$name.pid")"
            # The server runs in its own session (setsid): end its process group, uvicorn workers included.
            kill -TERM -- "-$pid" 2>/dev/null || true
            pids+=("$pid")
            rm -f "$STATE/$name.pid"
        fi
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    [ "${#pids[@]}" -eq 0 ] || say "stopped the Prefect and MLflow servers"
    if [ -f "$STATE/pgdata.path" ]; then
        local data
        data="$(cat "$STATE/pgdata.path")"
        if [ -f "$data/PG_VERSION" ] && as_pg "$(pg_bin)/pg_ctl" -D "$data" status >/dev/null 2>&1; then
            as_pg "$(pg_bin)/pg_ctl" -D "$data" -m fast -w stop >/dev/null
            say "stopped postgres"
        fi
    fi
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    env) write_env && cat "$STATE/env.sh" ;;
    *) die "usage: $0 start|stop|env [STATE_DIR]" ;;
esac

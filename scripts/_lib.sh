# shellcheck shell=bash
# Shared by scripts/test and scripts/run (sourced, not executed).
#
# - ROOT: the repository root; every script cd's there first.
# - step NAME CMD...: runs one named step, stops the script with a clear message if it fails.
# - ensure_venv: creates .venv with Python 3.11 if missing and installs the project (editable,
#   with the dev extras, pinned by constraints.txt when that file exists). The install is
#   skipped while pyproject.toml and constraints.txt are unchanged since the last one.
# - ensure_services: starts the machine's PostgreSQL and Redis if they don't answer, then waits.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.connector-install-stamp"

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\n%s: FAILED: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

step() {
    local name="$1"
    shift
    say "$name"
    local status=0
    "$@" || status=$?
    if ((status != 0)); then
        printf '\n%s: FAILED at step "%s" (exit %d): %s\n' "$(basename "$0")" "$name" "$status" "$*" >&2
        exit "$status"
    fi
}

find_python311() {
    local candidate
    for candidate in python3.11 python3 "$HOME"/.pyenv/versions/3.11.*/bin/python3.11; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

install_fingerprint() {
    # What the install depends on: the project metadata, the pins and the interpreter.
    {
        cat "$ROOT/pyproject.toml"
        if [[ -f "$ROOT/constraints.txt" ]]; then cat "$ROOT/constraints.txt"; fi
        "$VENV/bin/python" -VV
    } | sha256sum | cut -d' ' -f1
}

ensure_venv() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        local python
        python="$(find_python311)" || die "Python 3.11 not found (tried python3.11, python3, ~/.pyenv)"
        say "creating .venv with $python"
        "$python" -m venv "$VENV" || die "could not create .venv"
    fi
    if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(install_fingerprint)" && -x "$VENV/bin/service" ]]; then
        return 0
    fi
    local pins=()
    if [[ -f "$ROOT/constraints.txt" ]]; then
        pins=(-c "$ROOT/constraints.txt")
    fi
    say "installing the project into .venv: pip install ${pins[*]:+${pins[*]} }-e '.[dev]'"
    rm -f "$STAMP"
    (cd "$ROOT" && "$VENV/bin/python" -m pip install --quiet "${pins[@]}" -e '.[dev]') ||
        die "pip install failed (see the messages above)"
    install_fingerprint >"$STAMP"
}

wait_for() {
    local what="$1"
    shift
    local _
    for _ in $(seq 1 30); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 1
    done
    die "$what did not answer within 30 s ($*)"
}

ensure_services() {
    # The commands are this machine kind's own (python-svc: PostgreSQL 15 and Redis, local).
    if ! pg_isready -h 127.0.0.1 -q; then
        say "starting PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start ||
            echo "pg_ctlcluster failed; waiting in case it is starting anyway" >&2
        wait_for PostgreSQL pg_isready -h 127.0.0.1 -q
    fi
    if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
        say "starting Redis"
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
            --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log ||
            echo "redis-server failed to start; waiting in case it is starting anyway" >&2
        wait_for Redis redis-cli -h 127.0.0.1 ping
    fi
    echo "PostgreSQL and Redis answer on 127.0.0.1"
}

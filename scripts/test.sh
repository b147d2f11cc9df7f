#!/usr/bin/env bash
# Installs baoke and its test tools into .venv, then runs lint, type checks and the whole test
# suite (SQLite and PostgreSQL). Used by README's second command and by CI (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# The Spark twin's tests need a Java runtime; install Debian's when it is missing.
if ! command -v java >/dev/null && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    openjdk-17-jre-headless >/dev/null
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'

# The store tests need PostgreSQL (BAOKE_TEST_DATABASE_URL, default the local server). Start the
# local cluster when it is installed but stopped; with CI=true the tests fail if it is missing.
if [ -z "${BAOKE_TEST_DATABASE_URL:-}" ] && command -v pg_isready >/dev/null \
    && ! pg_isready -q -h 127.0.0.1 -p 5432 && command -v pg_ctlcluster >/dev/null; then
  version=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -n 1)
  [ -n "$version" ] && pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
fi

.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/pytest -n auto -q "$@"

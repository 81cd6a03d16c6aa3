#!/usr/bin/env bash
# local-up.sh — run the whole logagg system locally on a throwaway cluster.
#
#   ./scripts/local-up.sh            # foreground; Ctrl-C stops everything
#   ./scripts/local-up.sh --detach   # leave it running; stop with --stop
#   ./scripts/local-up.sh --stop
#
# It installs dependencies, builds and installs logagg, creates a fresh
# PostgreSQL 15 cluster under .local/ (git-ignored) with logagg preloaded,
# creates the extension, then runs the hooks in scripts/local.d/ in name
# order (emitters, alert receivers, sync target).  Each hook is sourced with
# LOCAL_DIR, PGHOST, PGPORT, PGUSER, PGDATABASE and LOGAGG_URL set, and
# registers processes to stop by appending PIDs to $LOCAL_DIR/pids.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
RUN_USER=${LOGAGG_RUN_USER:-postgres}
LOCAL_DIR="$here/.local"
# The cluster runs as $RUN_USER, who must be able to reach the folder; a
# checkout under /root is not reachable, so fall back to /tmp there.
if ! runuser -u "$RUN_USER" -- test -x "$here" 2>/dev/null; then
  LOCAL_DIR=/tmp/logagg-local
fi
export PGPORT=${LOGAGG_PGPORT:-55432}
export LOGAGG_PORT=${LOGAGG_PORT:-7480}
export PGHOST="$LOCAL_DIR/run"
export PGUSER=postgres PGDATABASE=postgres
export LOGAGG_URL="ws://127.0.0.1:$LOGAGG_PORT/ingest"
export LOCAL_DIR
bindir=/usr/lib/postgresql/15/bin

as_user() { if [ "$(id -un)" = "$RUN_USER" ]; then "$@"; else runuser -u "$RUN_USER" -- "$@"; fi; }

stop_all() {
  if [ -f "$LOCAL_DIR/pids" ]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$LOCAL_DIR/pids"
    rm -f "$LOCAL_DIR/pids"
  fi
  if [ -f "$LOCAL_DIR/data/postmaster.pid" ]; then
    as_user "$bindir/pg_ctl" -D "$LOCAL_DIR/data" -m fast -w stop >/dev/null || true
  fi
}

case "${1:-}" in
  --stop) stop_all; echo "logagg local system stopped"; exit 0 ;;
  --detach|"") ;;
  *) echo "usage: $0 [--detach|--stop]" >&2; exit 2 ;;
esac

bash "$here/scripts/install-deps.sh"
make -C "$here" -s
make -C "$here" -s install >/dev/null

stop_all
rm -rf "$LOCAL_DIR"
mkdir -p "$LOCAL_DIR/run" "$LOCAL_DIR/logs"
chown -R "$RUN_USER" "$LOCAL_DIR"
as_user "$bindir/initdb" -D "$LOCAL_DIR/data" -A trust -U postgres >/dev/null
cat >> "$LOCAL_DIR/data/postgresql.conf" <<CONF
# --- logagg local system ---
listen_addresses = ''
port = $PGPORT
unix_socket_directories = '$LOCAL_DIR/run'
shared_preload_libraries = 'logagg'
logagg.database = 'postgres'
logagg.listen_address = '127.0.0.1'
logagg.port = $LOGAGG_PORT
logagg.partition_interval = '1h'
CONF
as_user "$bindir/pg_ctl" -D "$LOCAL_DIR/data" -l "$LOCAL_DIR/logs/postgresql.log" -w start >/dev/null
psql -qX -c "CREATE EXTENSION logagg" >/dev/null
: > "$LOCAL_DIR/pids"

for hook in "$here"/scripts/local.d/*.sh; do
  [ -e "$hook" ] || continue
  # shellcheck source=/dev/null
  source "$hook"
done

cat <<INFO

logagg is running.
  SQL:        psql -h $PGHOST -p $PGPORT -U postgres postgres
              (try: SELECT * FROM logagg.status();
                    SELECT severity, count(*) FROM logagg.logs GROUP BY 1;)
  Ingest:     $LOGAGG_URL
  Server log: $LOCAL_DIR/logs/postgresql.log
INFO
[ -f "$LOCAL_DIR/info" ] && cat "$LOCAL_DIR/info"

if [ "${1:-}" = "--detach" ]; then
  echo "Stop it with: $0 --stop"
  exit 0
fi
echo "Press Ctrl-C to stop."
trap 'stop_all; echo; echo "logagg local system stopped"; exit 0' INT TERM
while sleep 3600; do :; done

#!/usr/bin/env bash
# test/isolation.sh — pg_isolation_regress specs of test/isolation/specs
# (concurrent dispatchers and SKIP LOCKED, claims vs ingest) on a temporary
# instance with logagg preloaded but no dispatch workers, so only the
# specs' sessions take alerts.  Must run as a non-root user.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
pgxs=$(dirname "$(pg_config --pgxs)")
runner="$pgxs/../test/isolation/pg_isolation_regress"
[ -x "$runner" ] || { echo "pg_isolation_regress not found at $runner (postgresql-server-dev-15)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/logagg-isolation.XXXXXX")
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/isolation.conf" <<CONF
shared_preload_libraries = 'logagg'
logagg.database = 'isolation_regression'
logagg.listen_address = '127.0.0.1'
logagg.port = $port
logagg.dispatch_workers = 0
CONF
specs=("$@")
if [ ${#specs[@]} -eq 0 ]; then
  mapfile -t specs < <(cd "$here/test/isolation/specs" && ls *.spec | sed 's/\.spec$//' | sort)
fi
echo "isolation: output in $work"
exec "$runner" --bindir="$(pg_config --bindir)" \
  --inputdir="$here/test/isolation" --outputdir="$work" \
  --temp-instance="$work/instance" --temp-config="$work/isolation.conf" \
  --load-extension=logagg "${specs[@]}"

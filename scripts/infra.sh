#!/usr/bin/env bash
# Starts (or stops) the distributed mode's real servers on loopback for the tests, as INFRA.md
# describes: PostgreSQL 15, nats-server with JetStream, SeaweedFS (S3). Each gets a free port
# and lives under one folder; `start` writes the environment the tests read to $DIR/env.
#
#   scripts/infra.sh start DIR    # then: source DIR/env
#   scripts/infra.sh stop DIR
set -euo pipefail

cmd="${1:?usage: infra.sh start|stop DIR}"
dir="${2:?usage: infra.sh start|stop DIR}"
PG_BIN=/usr/lib/postgresql/15/bin

say() { printf 'infra: %s\n' "$*" >&2; }

# A free port below 50000 whose +10000 is free too (SeaweedFS serves gRPC there).
free_port() {
  python3 - <<'PY'
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
while True:
    p = random.randrange(20000, 50000)
    if free(p) and free(p + 10000):
        print(p); break
PY
}

wait_for() {
  local what="$1"; shift
  for _ in $(seq 1 150); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  say "$what did not become ready"; return 1
}

start() {
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  local pg_port nats_port nats_mon s3_port m_port v_port f_port
  pg_port=$(free_port); nats_port=$(free_port); nats_mon=$(free_port)
  s3_port=$(free_port); m_port=$(free_port); v_port=$(free_port); f_port=$(free_port)

  # PostgreSQL refuses to run as root: its folders belong to `postgres`, outside /root.
  mkdir -p "$dir/pg"
  chown postgres "$dir/pg"
  chmod 755 "$dir"
  su postgres -s /bin/sh -c "$PG_BIN/initdb -D '$dir/pg/data' -U postgres --auth=trust -E UTF8 --no-locale >'$dir/pg/initdb.log' 2>&1"
  su postgres -s /bin/sh -c "$PG_BIN/pg_ctl -D '$dir/pg/data' -l '$dir/pg/server.log' -w -o \"-p $pg_port -k '$dir/pg' -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off\" start >/dev/null"
  wait_for postgres "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$pg_port"

  mkdir -p "$dir/nats"
  # Each server leads its own process group (setsid), so `stop` can end it and all it forked.
  setsid nohup nats-server -js -sd "$dir/nats" -a 127.0.0.1 -p "$nats_port" -m "$nats_mon" >"$dir/nats.log" 2>&1 &
  echo $! >"$dir/nats.pid"
  wait_for nats curl -sf "http://127.0.0.1:$nats_mon/healthz?js-enabled-only=true"

  mkdir -p "$dir/weed"
  cat >"$dir/s3.json" <<JSON
{"identities":[{"name":"cutx","credentials":[{"accessKey":"cutx-test","secretKey":"cutx-test-secret"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
  setsid nohup weed mini -dir="$dir/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port="$m_port" \
    -volume.port="$v_port" -filer.port="$f_port" -s3.port="$s3_port" -s3.port.iceberg=0 -s3.port.lance=0 \
    -webdav=false -admin.ui=false -master.telemetry=false -master.volumeSizeLimitMB=64 -volume.max=0 -s3.config="$dir/s3.json" >"$dir/weed.log" 2>&1 &
  echo $! >"$dir/weed.pid"
  wait_for seaweedfs curl -sf "http://127.0.0.1:$s3_port/healthz"

  cat >"$dir/env" <<ENV
export CUTX_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$pg_port/postgres
export CUTX_TEST_POSTGRES_PORT=$pg_port
export CUTX_TEST_POSTGRES_DIR=$dir/pg/data
export CUTX_TEST_NATS_URL=nats://127.0.0.1:$nats_port
export CUTX_TEST_NATS_MONITOR=http://127.0.0.1:$nats_mon
export CUTX_TEST_NATS_DIR=$dir/nats
export CUTX_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port
export CUTX_TEST_S3_ACCESS_KEY=cutx-test
export CUTX_TEST_S3_SECRET_KEY=cutx-test-secret
export CUTX_TEST_S3_REGION=us-east-1
export CUTX_TEST_S3_BUCKET=cutx-media-test
ENV
  say "postgres :$pg_port, nats :$nats_port, s3 :$s3_port (logs in $dir)"
}

# True while process $1 lives. A zombie has exited: whoever adopted it may never reap it (a
# container's init often does not), and `kill -0` would count it as running.
alive() { ps -o stat= -p "$1" 2>/dev/null | grep -qv '^Z'; }

# True while any process of the group led by $1 lives (zombies aside).
group_alive() { ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'; }

# Asks the process group led by $2 to end (SIGTERM), waits up to 15 s, then kills it (SIGKILL)
# and waits again. Fails if it is still there.
stop_group() {
  local name="$1" pid="$2"
  group_alive "$pid" || return 0
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 75); do group_alive "$pid" || return 0; sleep 0.2; done
  say "$name (pid $pid) still running 15 s after SIGTERM: SIGKILL"
  kill -KILL -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 25); do group_alive "$pid" || return 0; sleep 0.2; done
  say "$name (pid $pid) is still running after SIGKILL"
  return 1
}

# Stops every server under $dir and waits for each to exit; fails (and keeps the pid files) if
# one is still running.
stop() {
  [ -d "$dir" ] || return 0
  local failed=0 name pid
  for name in nats weed; do
    [ -f "$dir/$name.pid" ] || continue
    pid="$(cat "$dir/$name.pid")"
    if stop_group "$name" "$pid"; then rm -f "$dir/$name.pid"; else failed=1; fi
  done
  local pg_pid_file="$dir/pg/data/postmaster.pid"
  if [ -f "$pg_pid_file" ]; then
    pid="$(head -n1 "$pg_pid_file")"
    # `fast` rolls back open transactions and waits (up to 60 s) for the server to exit.
    su postgres -s /bin/sh -c "$PG_BIN/pg_ctl -D '$dir/pg/data' -m fast -w -t 30 stop >/dev/null 2>&1" || true
    if alive "$pid"; then
      say "postgres (pid $pid) did not stop: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 1 25); do alive "$pid" || break; sleep 0.2; done
      if alive "$pid"; then say "postgres (pid $pid) is still running"; failed=1; fi
    fi
  fi
  return "$failed"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: infra.sh start|stop DIR" >&2; exit 2 ;;
esac

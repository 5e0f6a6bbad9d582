#!/usr/bin/env bash
# The test command: installs what the tests need, then lints the protos, checks formatting,
# builds everything and runs every test. Exits non-zero on the first failing step (the test
# step itself runs every test before failing).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

# pip may put console scripts in a folder that is not on PATH; look there too.
for dir in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)" \
           "$(python3 -m site --user-base 2>/dev/null || true)/bin"; do
  if [ -d "$dir" ] && [[ ":$PATH:" != *":$dir:"* ]]; then PATH="$PATH:$dir"; fi
done
export PATH

step "installing test tools (grpcurl, buf, rustfmt, clippy, cargo-machete) if missing"
scripts/install-test-tools.sh

# A warm target folder outside the clone, so a second run on the same machine is fast.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cutx-target}"
# Tests that drive the real grpcurl fail instead of skipping when it is missing.
export CUTX_REQUIRE_TOOLS=1

step "buf lint"
buf lint

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo machete (no crate lists a dependency it does not use)"
cargo machete

# The end-to-end tests spawn the cutx binary from the target folder: build it first.
step "cargo build --workspace --all-targets (target: $CARGO_TARGET_DIR)"
cargo build --workspace --all-targets

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# Every process this run starts (servers, test binaries, the cutx processes and nats-servers the
# tests spawn) inherits this, so at the end the script can tell whether any of them is left.
CUTX_TEST_RUN_ID="$(python3 -c 'import uuid; print(uuid.uuid4().hex)')"
export CUTX_TEST_RUN_ID

# Pids of this run's processes still alive (zombies have exited), the script itself aside.
leftovers() {
  local proc pid
  for proc in /proc/[0-9]*; do
    pid="${proc#/proc/}"
    [ "$pid" = "$$" ] || [ "$pid" = "$BASHPID" ] && continue
    [ "$(awk '{print $3}' "$proc/stat" 2>/dev/null)" = Z ] && continue
    if { tr '\0' '\n' <"$proc/environ"; } 2>/dev/null | grep -qx "CUTX_TEST_RUN_ID=$CUTX_TEST_RUN_ID"; then
      echo "$pid"
    fi
  done
}

step "starting PostgreSQL, NATS and SeaweedFS on loopback (scripts/infra.sh)"
infra_dir="$(mktemp -d /tmp/cutx-infra.XXXXXX)"
# Stopped whatever happens next, a failing test or a SIGTERM included (bash runs no EXIT trap
# when a signal kills it, so each signal becomes an exit). Every server must be gone afterwards:
# if one is not, the run fails and its folder stays for a look.
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if scripts/infra.sh stop "$infra_dir"; then
    rm -rf "$infra_dir"
  else
    echo "test.sh: a server started by scripts/infra.sh is still running (see $infra_dir)" >&2
    rc=1
  fi
  # What the tests started themselves is killed as they end; give it 15 s to be gone.
  local left=""
  for _ in $(seq 1 75); do
    left="$(leftovers)"
    [ -z "$left" ] && break
    sleep 0.2
  done
  if [ -n "$left" ]; then
    echo "test.sh: processes of this run are still running:" >&2
    # shellcheck disable=SC2086
    ps -o pid,ppid,etime,cmd -p $(echo $left | tr ' ' ',') >&2 || true
    rc=1
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
scripts/infra.sh start "$infra_dir"
# shellcheck disable=SC1091
source "$infra_dir/env"

step "cargo test --workspace --no-fail-fast"
cargo test --workspace --no-fail-fast

step "all checks passed"

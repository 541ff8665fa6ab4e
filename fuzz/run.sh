#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: `fuzz/run.sh [SECONDS_PER_TARGET]` (default 60).
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); builds without a sanitizer so the stable toolchain
# works (`RUSTC_BOOTSTRAP=1 fuzz/run.sh` with FUZZ_SANITIZER=address for ASan). Crashes land in
# fuzz/artifacts/<target>/; keep each one as a regression input under fuzz/regressions/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
sanitizer=${FUZZ_SANITIZER:-none}
targets=(frame token scope config daemon)
cargo fuzz build --sanitizer "$sanitizer" -O
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  # Replay every kept regression input first: each must pass.
  if [ -d "regressions/$target" ] && [ -n "$(ls -A "regressions/$target")" ]; then
    cargo fuzz run --sanitizer "$sanitizer" -O "$target" "regressions/$target"/* -- -runs=0
  fi
  echo "== fuzzing $target for ${seconds}s"
  cargo fuzz run --sanitizer "$sanitizer" -O "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=4096 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|==|INFO: (Running|Done))|ERROR|panicked" || true
  if [ -n "$(ls -A "artifacts/$target" 2>/dev/null)" ]; then
    echo "fuzz target $target found a crash: see fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
echo "fuzzing: every target ran ${seconds}s without a crash"

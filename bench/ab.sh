#!/usr/bin/env bash
# A/B of two builds in the same run: each round drives build A's daemon with build A's generator, build B's
# daemon with build B's generator, and the echo floor (with B's generator), for every shape, back to back,
# so that the machine's drift falls on all three alike. Prints one line per measurement; compare the medians
# of A/floor and B/floor.
#
#   bash bench/ab.sh A_BIN_DIR B_BIN_DIR [ROUNDS] [SECONDS]
#
# Each BIN_DIR holds keywardd and keyward-bench (cargo build --release -p keyward-daemon -p keyward-bench).
set -euo pipefail
a=$1 b=$2 rounds=${3:-3} seconds=${4:-3}
shapes=(conns:1 conns:32 pipelined:16)
work=$(mktemp -d /tmp/keyward-ab.XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start_daemon() { # BIN_DIR NAME
  local dir=$work/$2
  mkdir -p "$dir"
  "$1/keywardd" --data-dir "$dir/data" --socket "$dir/run/verify.sock" --admin-socket "$dir/run/admin.sock" \
    2>"$dir/log" &
  pids+=($!)
  until [ -S "$dir/run/admin.sock" ]; do sleep 0.1; done
}

start_daemon "$a" A
start_daemon "$b" B
"$b/keyward-bench" echo-server --socket "$work/echo.sock" &
pids+=($!)
until [ -S "$work/echo.sock" ]; do sleep 0.1; done

for round in $(seq "$rounds"); do
  for shape in "${shapes[@]}"; do
    for side in A B; do
      bin=$a; [ "$side" = B ] && bin=$b
      line=$("$bin/keyward-bench" drive --socket "$work/$side/run/verify.sock" \
        --admin-socket "$work/$side/run/admin.sock" --shape "$shape" --seconds "$seconds")
      echo "round $round $shape $side $line"
    done
    line=$("$b/keyward-bench" drive --floor --socket "$work/echo.sock" --shape "$shape" --seconds "$seconds")
    echo "round $round $shape floor $line"
  done
done

#!/usr/bin/env bash
# Runs the README's shell examples as a reader would: every ```sh block of "A short tour" (with its
# subsections), of "For HTTP servers: the tower layer" and of "For any app server: forward auth…", top to bottom, in one bash session, against a
# fresh daemon in a temporary directory. Fails, naming the README line, when a command does not do what
# the README says:
#
# - every command must exit 0; a command the README expects to fail is written `... || echo "exit $?"`
#   with `exit N` in its comment, and its output must show `exit N`;
# - a code named in a command's trailing comment (`# INSUFFICIENT_SCOPE`, `# VALID`, …; the names of
#   protocol/src/code.rs) must appear in its output;
# - a `curl` command's comment starts with the HTTP status it must answer (`# 401: missing header`), and
#   when it mentions `RateLimit-*` headers the answer must carry them.
#
# The tour's daemon is started here with its defaults, under temporary XDG_RUNTIME_DIR and XDG_STATE_HOME
# (the README runs it in another terminal). Before running, the commands are rewritten in five ways only:
# `target/release/` becomes $KEYWARD_BIN_DIR, the example's `cargo run --release …` its binary built there,
# `/tmp/kw` a temporary directory, and ports 8080 (the example server) and 9311 (the forward-auth
# endpoint) free ports.
#
# Needs the release binaries and the example (cargo build --release --locked; cargo build --release
# --locked -p keyward-client --features axum --example tables_api). Installs jq and curl when missing.
#
#   KEYWARD_BIN_DIR        where keywardd, keyward and examples/tables_api are
#                          [default: $CARGO_TARGET_DIR/release, else target/release]
#   KEYWARD_TOUR_TIMEOUT   seconds the whole run may take [default: 120]
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
readme=$repo/README.md
bin_dir=${KEYWARD_BIN_DIR:-${CARGO_TARGET_DIR:-$repo/target}/release}
bin_dir=$(cd "$bin_dir" 2>/dev/null && pwd) || { echo "readme-tour: no directory ${KEYWARD_BIN_DIR:-target/release}" >&2; exit 1; }
timeout_secs=${KEYWARD_TOUR_TIMEOUT:-120}
sections=("A short tour" "For HTTP servers: the tower layer"
  "For any app server: forward auth from nginx, Caddy, Envoy or Traefik")
example_run='cargo run --release -p keyward-client --features axum --example tables_api --'

# Messages go to the script's own stderr (fd 3), also from inside a command whose output is captured.
exec 3>&2
fail() {
  if [ -s "${tmp:-}/keywardd.log" ]; then
    printf '\nthe tour daemon'"'"'s last log lines:\n' >&3
    tail -n 20 "$tmp/keywardd.log" | sed 's/^/  /' >&3
  fi
  printf '\nreadme-tour: %s\n' "$*" >&3
  exit 1
}

for binary in keywardd keyward examples/tables_api; do
  [ -x "$bin_dir/$binary" ] || fail "$bin_dir/$binary is missing: build it first (see the top of $0)"
done

if ! command -v jq >/dev/null || ! command -v curl >/dev/null; then
  [ "$(id -u)" = 0 ] || fail "the README's examples need jq and curl: install them (apt-get install jq curl)"
  echo "readme-tour: installing jq and curl"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq jq curl >/dev/null; } || fail "cannot install jq and curl"
fi

# The codes a comment may name, as the protocol spells them.
mapfile -t codes < <(grep -o '=> "[A-Z][A-Z_]*"' "$repo/protocol/src/code.rs" | grep -o '[A-Z][A-Z_]*' | sort -u)
[ "${#codes[@]}" -gt 10 ] || fail "cannot read the codes from protocol/src/code.rs"

tmp=$(mktemp -d /tmp/keyward-readme.XXXXXX)
daemon_pid= watchdog=
cleanup() {
  local pids
  [ -n "$watchdog" ] && pkill -P "$watchdog" 2>/dev/null
  pids=$(jobs -p)
  [ -n "$daemon_pid" ] && pids="$pids $daemon_pid"
  {
    for pid in $pids; do kill "$pid"; done
    for pid in $pids; do wait "$pid"; done
  } 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# Free ports for the example server and the forward-auth endpoint, in place of the README's 8080 and 9311.
free_port() {
  local candidate
  for candidate in $(seq "$1" "$(($1 + 100))"); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
}
port=$(free_port 18080)
auth_port=$(free_port 19311)
[ -n "$port" ] && [ -n "$auth_port" ] || fail "no free ports in 18080-18180 and 19311-19411"

# The blocks: "LINE<TAB>TEXT" for every line inside a ```sh fence of the sections, in README order.
extract() {
  awk -v list="$(printf '%s\n' "${sections[@]}")" '
    BEGIN { n = split(list, names, "\n"); for (i = 1; i <= n; i++) if (names[i] != "") wanted["## " names[i]] = 1 }
    /^## / && !fence { in_section = ($0 in wanted); if (in_section) seen[$0] = 1 }
    /^```/ {
      if (!fence) { fence = 1; sh = in_section && ($0 == "```sh"); next }
      fence = 0; sh = 0; next
    }
    fence && sh { printf "%d\t%s\n", NR, $0 }
    END { for (name in wanted) if (!(name in seen)) { print "missing section: " name > "/dev/stderr"; exit 1 } }
  ' "$readme"
}
lines=$(extract) || fail "README.md has lost a section this script runs"
[ -n "$lines" ] || fail "no \`\`\`sh block found in the README's tour"

# The five rewrites, through placeholders so that no replacement is rewritten again.
rewrite() {
  local text=$1
  text=${text//"$example_run"/@EXAMPLE@}
  text=${text//target\/release\//@BIN@/}
  text=${text//\/tmp\/kw/@TMP@/kw}
  text=${text//127.0.0.1:8080/127.0.0.1:@PORT@}
  text=${text//127.0.0.1:9311/127.0.0.1:@AUTHPORT@}
  text=${text//@EXAMPLE@/"$bin_dir/examples/tables_api"}
  text=${text//@BIN@/"$bin_dir"}
  text=${text//@TMP@/"$tmp"}
  text=${text//@PORT@/"$port"}
  text=${text//@AUTHPORT@/"$auth_port"}
  printf '%s' "$text"
}

# Group the lines into commands: continuation lines (`\`) and constructs spanning lines join the next.
commands=() starts=()
pending= pending_start=
while IFS=$'\t' read -r number text; do
  if [ -z "$pending" ]; then
    [[ "$text" =~ ^[[:space:]]*(#.*)?$ ]] && continue
    pending=$text pending_start=$number
  else
    pending+=$'\n'$text
  fi
  [[ "$text" == *\\ ]] && continue
  bash -n -c "$pending" 2>/dev/null || continue
  commands+=("$pending") starts+=("$pending_start")
  pending=
done <<<"$lines"
[ -z "$pending" ] || fail "README.md:$pending_start: this command never ends"

# The tour's daemon: defaults, in temporary directories (README: "with the daemon running in one terminal").
mkdir -m 0700 "$tmp/run" "$tmp/state"
: >"$tmp/keyward.toml"
unset KEYWARD_SOCKET KEYWARD_ADMIN_SOCKET KEYWARD_DATA_DIR KEYWARD_CONFIG KEYWARD_LEGACY_SUNSET
export XDG_RUNTIME_DIR=$tmp/run XDG_STATE_HOME=$tmp/state
# curl without its progress meter, which a terminal would not show either.
printf -- '--silent\n--show-error\n' >"$tmp/.curlrc"
export CURL_HOME=$tmp
"$bin_dir/keywardd" --config "$tmp/keyward.toml" 2>"$tmp/keywardd.log" &
daemon_pid=$!
for _ in $(seq 100); do
  "$bin_dir/keyward" ping >/dev/null 2>&1 && break
  kill -0 "$daemon_pid" 2>/dev/null || fail "the tour's daemon did not start"
  sleep 0.1
done
"$bin_dir/keyward" ping >/dev/null || fail "the tour's daemon does not answer"
echo "readme-tour: daemon up (sockets in $XDG_RUNTIME_DIR/keyward), ${#commands[@]} commands to run"

# A run that hangs is stopped, naming the command it hung on.
current_line=
trap 'fail "README.md:$current_line: still running after ${timeout_secs}s"' USR1
# (USR1 is handled once the command in hand ends: its processes are stopped so that it does.)
(sleep "$timeout_secs" && kill -USR1 $$ && sleep 1 && pkill -TERM -P $$) 2>/dev/null &
watchdog=$!

shopt -s expand_aliases
cd "$repo" || exit 1
checked=0
for i in "${!commands[@]}"; do
  command=${commands[$i]}
  current_line=${starts[$i]}
  last_line=${command##*$'\n'}
  comment=
  [[ "$last_line" =~ [[:space:]]#[[:space:]](.*)$ ]] && comment=${BASH_REMATCH[1]}
  printf '\n$ %s\n' "$command"
  out=$tmp/out.$i
  # shellcheck disable=SC2294 # the README's command, as written (aliases and all)
  { eval "$(rewrite "$command")"; } >"$out" 2>&1 </dev/null
  status=$?
  sed 's/^/  /' "$out"
  [ -s "$out" ] && [ -n "$(tail -c1 "$out")" ] && echo
  where="README.md:$current_line"
  [ "$status" = 0 ] || fail "$where: exited $status (a command expected to fail is written with || echo \"exit \$?\" and says so)"
  if [[ "$comment" =~ (^|[^[:alnum:]])exit\ ([0-9]+) ]]; then
    grep -qx "exit ${BASH_REMATCH[2]}" "$out" || fail "$where: the comment says exit ${BASH_REMATCH[2]}; the output does not show it"
    checked=$((checked + 1))
  elif [[ "$command" == *'|| echo "exit $?"'* ]]; then
    fail "$where: written to tolerate a failure, but its comment does not say which exit status"
  fi
  for code in "${codes[@]}"; do
    if [[ "$comment" =~ (^|[^A-Z_])$code([^A-Z_]|$) ]]; then
      grep -qw -- "$code" "$out" || fail "$where: the comment says $code; the output does not show it"
      checked=$((checked + 1))
    fi
  done
  if [[ "$command" == curl* ]]; then
    [[ "$comment" =~ ^([0-9]{3}) ]] || fail "$where: a curl line's comment must start with its HTTP status"
    expected=${BASH_REMATCH[1]}
    got=$(grep -m1 -o '^HTTP/[0-9.]* [0-9]*' "$out" | awk '{print $2}')
    [ "$got" = "$expected" ] || fail "$where: the comment says HTTP $expected, the server answered ${got:-nothing}"
    checked=$((checked + 1))
    if [[ "$comment" == *RateLimit-* ]]; then
      grep -qi '^ratelimit-limit:' "$out" || fail "$where: the comment promises RateLimit-* headers; there are none"
      checked=$((checked + 1))
    fi
  fi
done

printf '\nreadme-tour: %d commands of README.md ran as written; %d expectations in their comments held\n' \
  "${#commands[@]}" "$checked"

#!/usr/bin/env bash
# HTTP hello-world throughput under wrk, an external load generator: greenlet's
# `examples/http_hello` beside its peers `hyper_hello` (hyper 1.x, tokio, 2 worker threads) and
# `minihttp_hello` (may_minihttp 0.1.11, may's defaults), which answer the same request with
# the same response (benches/peers/hello.rs).
#
# Run with: benches/wrk.sh   (from anywhere in the repository; about 2 minutes)
#
# It builds the three servers in release, then for each connection count runs the servers
# one after the other, ROUNDS times (greenlet, hyper, minihttp, greenlet, ...): each round
# starts the server on a fresh loopback port, waits until it accepts, runs a warm-up wrk, then
# the measured `wrk -t1 -cN -dDs --latency`, and stops the server. It prints each round, then
# a table of the median req/s and p99 latency per server and the ratios greenlet/hyper and
# greenlet/minihttp, with the machine it ran on. Settings (environment):
#   WRK_CONNS="64 256"  WRK_ROUNDS=3  WRK_SECS=5  WRK_WARMUP_SECS=1  WRK_THREADS=1
#   WRK_PORT=18080 (first port tried)  WRK_NO_BUILD=1 (use the binaries already built)
set -euo pipefail

conns=${WRK_CONNS:-"64 256"}
rounds=${WRK_ROUNDS:-3}
secs=${WRK_SECS:-5}
warmup=${WRK_WARMUP_SECS:-1}
threads=${WRK_THREADS:-1}
port=${WRK_PORT:-18080}

names=(greenlet hyper minihttp)
declare -A example=([greenlet]=http_hello [hyper]=hyper_hello [minihttp]=minihttp_hello)

die() {
    echo "wrk.sh: $*" >&2
    exit 1
}

command -v wrk >/dev/null ||
    die "wrk is not installed; install it with: sudo apt-get install -y wrk"

cd "$(dirname "$0")/.."
if [[ -z ${WRK_NO_BUILD:-} ]]; then
    echo "building the servers (release)..." >&2
    # At the root, cargo finds each example in its package: http_hello is greenlet's, the
    # peers are greenlet-benches' (benches/Cargo.toml).
    cargo build --release --quiet --example http_hello --example hyper_hello \
        --example minihttp_hello >&2
fi
target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin=$target_dir/release/examples
for n in "${names[@]}"; do
    [[ -x $bin/${example[$n]} ]] || die "$bin/${example[$n]} is missing (build it, or unset WRK_NO_BUILD)"
done

logs=$(mktemp -d)
server=
client=
stop_server() {
    if [[ -n $client ]]; then
        kill "$client" 2>/dev/null || true
        client=
    fi
    if [[ -n $server ]]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
        server=
    fi
}
trap 'stop_server; rm -rf "$logs"' EXIT
trap 'exit 130' INT TERM

# Whether something accepts connections on loopback port $1.
accepts() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Starts server $1 on the next free port (sets $server and $port) and waits until it accepts.
start_server() {
    port=$((port + 1))
    while accepts "$port"; do port=$((port + 1)); done
    # --secs: the server also ends by itself should this script be killed outright.
    "$bin/${example[$1]}" --port "$port" --secs $((warmup + secs + 60)) >"$logs/$1.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do
        accepts "$port" && return 0
        kill -0 "$server" 2>/dev/null ||
            die "$1 exited before accepting on port $port: $(cat "$logs/$1.log")"
        sleep 0.1
    done
    die "$1 did not accept on port $port within 10 s"
}

# wrk with $1 connections for $2 seconds (more arguments go to wrk) against the server, its
# output in $logs/wrk.out. In the background, waited for: a signal to this script then runs
# its trap at once (bash runs none while a foreground command runs).
run_wrk() {
    local c=$1 d=$2
    shift 2
    wrk -t"$threads" -c"$c" -d"${d}s" "$@" "http://127.0.0.1:$port/" >"$logs/wrk.out" &
    client=$!
    wait "$client"
    client=
}

# "req/s p99_ms errors" from wrk's output on stdin (p99 in ms, "-" for no errors).
parse_wrk() {
    awk '
        /Requests\/sec:/ { rps = $2 }
        $1 == "99%" {
            v = $2; unit = v; sub(/[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v)
            p99 = unit == "us" ? v / 1000 : unit == "s" ? v * 1000 : unit == "m" ? v * 60000 : v
        }
        /Socket errors:/ { errors = errors $0 }
        /Non-2xx/ { errors = errors $0 }
        END { printf "%s %.2f %s\n", rps, p99, errors == "" ? "-" : errors }'
}

median() {
    tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

load() { cut -d' ' -f1-3 /proc/loadavg; }

declare -A rps p99
load_before=$(load)
echo "load average before: $load_before" >&2
shown=
for c in $conns; do
    for r in $(seq "$rounds"); do
        for n in "${names[@]}"; do
            start_server "$n"
            if [[ -z $shown ]] && command -v curl >/dev/null; then
                echo "--- $n: response to GET / ---" >&2
                curl -si "http://127.0.0.1:$port/" | tr -d '\r' >&2 || true
            fi
            run_wrk "$c" "$warmup"
            run_wrk "$c" "$secs" --latency
            stop_server
            read -r got_rps got_p99 errors < <(parse_wrk <"$logs/wrk.out")
            [[ -n $got_rps ]] || die "no Requests/sec in wrk's output for $n: $(cat "$logs/wrk.out")"
            rps[$c,$n]+="$got_rps "
            p99[$c,$n]+="$got_p99 "
            printf 'c%-4s round %s  %-9s %10.0f req/s  p99 %7.2f ms  errors: %s\n' \
                "$c" "$r" "$n" "$got_rps" "$got_p99" "$errors" >&2
        done
        shown=1
    done
done
load_after=$(load)

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z $(git status --porcelain --untracked-files=no 2>/dev/null) ]] || commit+=" (modified)"
echo
echo "machine: $(nproc) cores ($cpu), Linux $(uname -r), $(rustc -V), commit $commit"
echo "command: wrk -t$threads -c{${conns// /,}} -d${secs}s --latency, after a ${warmup} s warm-up;" \
    "$rounds rounds alternating the servers, median"
echo "load average: $load_before before, $load_after after"
echo
echo "| connections | greenlet req/s (p99) | hyper 1.x req/s (p99) | may_minihttp req/s (p99) | greenlet / hyper | greenlet / minihttp |"
echo "|---|---|---|---|---|---|"
for c in $conns; do
    declare -A m=()
    row="| $c"
    for n in "${names[@]}"; do
        m[$n]=$(median <<<"${rps[$c,$n]}")
        row+=" | $(printf '%.0f' "${m[$n]}") ($(median <<<"${p99[$c,$n]}") ms)"
    done
    row+=" | $(awk -v a="${m[greenlet]}" -v b="${m[hyper]}" 'BEGIN { printf "%.2f×", a / b }')"
    row+=" | $(awk -v a="${m[greenlet]}" -v b="${m[minihttp]}" 'BEGIN { printf "%.2f×", a / b }') |"
    echo "$row"
done

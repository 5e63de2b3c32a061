#!/usr/bin/env bash
# `make demo` alone and beside one CPU hog, alternating (alone, hog, alone, hog, ...) so that changes in the
# machine's other load hit both alike. The hog runs in its own session (with the kernel's autogroups, another
# user's job is scheduled as its own group). Prints one line per run: seconds, load averages before and after.
#
#   benchmarks/demo_under_load.sh [ROUNDS] [extra make arguments, e.g. THREADS=1]
#
# Each run's output goes to /tmp/demo_round<R>_hog<0|1>.log; `... 1 -n` checks the mechanics (make's dry run).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-1}
shift || true
touch .venv/bin/ssnas  # the venv is built: keep make from reinstalling it
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT  # a failed demo must not leave the hog running
for round in $(seq 1 "$rounds"); do
  for hog in 0 1; do
    pid=""
    if [ "$hog" = 1 ]; then
      setsid python3 -c 'while True: pass' &
      pid=$!
      sleep 1
    fi
    before=$(cut -d' ' -f1-4 /proc/loadavg)
    start=$(date +%s.%N)
    log="/tmp/demo_round${round}_hog${hog}.log"
    make demo "$@" > "$log" 2>&1 || { echo "make demo failed (round $round, hog $hog): see $log" >&2; exit 1; }
    end=$(date +%s.%N)
    after=$(cut -d' ' -f1-4 /proc/loadavg)
    [ -n "$pid" ] && kill "$pid"
    pid=""
    printf 'round %s hog %s: %.0f s (load before: %s; after: %s)\n' "$round" "$hog" \
      "$(echo "$end - $start" | bc)" "$before" "$after"
  done
done

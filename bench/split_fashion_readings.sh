#!/usr/bin/env bash
# Split-Fashion (Tiny ER, full data) under each reading of LC26's text that docs/fidelity.md compares with
# LC26 Table 1: Dense; Grow and Prune with winning tickets, at compactness 0.2 and 0.5, under the edit
# placements (exit: the default, step0: results protocol 2) and the Prune rewind readings (scope, point,
# lr schedule, none). All rows land in one results folder; the leaderboard's settings column names each reading.
# Usage: bench/split_fashion_readings.sh OUT [SEEDS]   (about 30 minutes on one core for 3 seeds)
set -euo pipefail
out=${1:?usage: $0 OUT [SEEDS]}
seeds=${2:-3}
common=(--scenario split_fashion --seeds "$seeds" --out "$out" --compactness 0.2,0.5)
run() { plasticity-bench run "${common[@]}" "$@" >/dev/null; }
run --strategy dense
run --strategy grow,prune --winning-ticket
run --strategy grow,prune --winning-ticket --option edit_placement=step0
run --strategy prune --winning-ticket --option rewind_scope=hidden
run --strategy prune --winning-ticket --option rewind_point=first_edit
run --strategy prune --winning-ticket --option rewind=none
run --strategy prune --winning-ticket --option rewind_lr=restart
plasticity-bench leaderboard --out "$out"

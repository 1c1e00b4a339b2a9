#!/usr/bin/env bash
# The refactoring safety net (issue "one run pipeline"): short runs of dense, grow+two_speed, prune, dyno
# (with winning tickets) on Permuted-MNIST (mnist5k) and a Split-Fashion Tiny ER run, lone and with
# --batch-runs 4, into OUT/lone and OUT/batched. Run it before and after a change and compare the two
# folders with `python bench/same_records.py BEFORE AFTER`: records must match but for timing fields.
# Usage: bench/same_records.sh OUT   (a few minutes on one core)
set -euo pipefail
out=${1:?usage: $0 OUT}
grid=(--strategy dense,grow+two_speed,prune,dyno --compactness 0.5 --seeds 2 --winning-ticket)
for mode in lone batched; do
  extra=(); [ "$mode" = batched ] && extra=(--batch-runs 4)
  plasticity-bench run --scenario permuted_mnist@mnist5k --tasks 3 --steps 40 "${grid[@]}" \
    --lr 0.001,0.003 --out "$out/$mode" "${extra[@]}" >/dev/null
  plasticity-bench run --scenario split_fashion --tasks 2 --steps 30 --strategy dense,grow --seeds 2 \
    --out "$out/$mode" "${extra[@]}" >/dev/null
done
echo "records: $(find "$out" -name '*.json' | wc -l)"

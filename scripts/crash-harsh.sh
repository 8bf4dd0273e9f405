#!/usr/bin/env bash
# The harsh crash configuration (100 tickets, 150 SIGKILLs of `mission serve` 0.05-0.4 s apart,
# work up to 3 s), once per seed; prints one RESULT line per run and exits non-zero if any run
# found a violation. Usage: scripts/crash-harsh.sh [SEED...]   (default: seeds 1 to 10)
set -uo pipefail
cd "$(dirname "$0")/.."
seeds=("$@")
[ ${#seeds[@]} -eq 0 ] && seeds=(1 2 3 4 5 6 7 8 9 10)
cargo test -p mission --test crash --no-run --quiet >/dev/null 2>&1
failed=0
for seed in "${seeds[@]}"; do
  out=$(MISSION_CRASH_SEED="$seed" cargo test -p mission --test crash --quiet -- \
        --ignored harsh_random_kills --nocapture --test-threads 1 2>&1)
  line=$(grep '^RESULT' <<<"$out" || true)
  if grep -q 'test result: ok' <<<"$out"; then
    echo "${line:-RESULT seed=$seed (no report)} PASS"
  else
    failed=1
    echo "${line:-RESULT seed=$seed} FAIL"
    grep -A20 'violations' <<<"$out" | head -30
  fi
done
exit $failed

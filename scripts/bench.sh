#!/usr/bin/env bash
# make bench: every benchmark, each printing its own comparison table, and docs/benchmarks.md
# written from what they print (the page is generated: edit this script, not the page). Sizes
# follow the issues: a 10 M-row source for slicing, a 10 M-row Kaggle-format CSV to import, 5 M
# rows for the kernel, 1k–100k runs for the watermark, all 78 months for the simulation, single
# rides and batches of 1,000 for the prediction API, 700k-row months and 78 months of 10,000 rides
# for the overhead ratios. BENCH_FULL=1 adds the full Kaggle-size simulation and its overhead
# ratios. The page is replaced only when every bench succeeded (written beside it, then
# renamed), so a failed or interrupted run leaves the last one.
# BENCH_PYTHON and BENCH_PAGE exist for the test of this script (tests/test_docs.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${BENCH_PYTHON:-.venv/bin/python}
PAGE=${BENCH_PAGE:-docs/benchmarks.md}
body=$(mktemp)
page=$(mktemp "$(dirname "$PAGE")/.benchmarks.XXXXXX")
trap 'rm -f "$body" "$page"' EXIT
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')

# bench TITLE COMMAND...: runs COMMAND, its output on the terminal and in the page's section.
bench() {
  local title=$1
  shift
  printf '\n== %s\n' "$title"
  printf '\n## %s\n\n```text\n$ %s\n' "$title" "$*" >>"$body"
  "$@" 2>&1 | tee -a "$body"
  printf '```\n' >>"$body"
}

bench "slicing the last month of a 10 M-row source" $PY benches/bench_data.py
bench "importing a Kaggle-format CSV" $PY benches/bench_import.py
bench "kernel: slice → clean → features → accumulate" $PY benches/bench_kernel.py --months 7
bench "watermark" $PY benches/bench_watermark.py
bench "quality on the generated history" $PY benches/quality.py
bench "quality on real rides, and the feature-v2 ablation" env OMP_NUM_THREADS=1 $PY benches/quality_real.py
bench "promotion policies, backtested" $PY benches/policy_backtest.py --rows-per-month 10000 20000 --seeds 11 12 13
bench "one lifecycle versus one fit" $PY benches/bench_lifecycle.py
bench "one lifecycle inside BigQuery versus rows out, on the emulator" $PY benches/bench_warehouse.py
bench "the prediction API versus the pyfunc in-process" $PY benches/bench_api.py
bench "the whole simulation" $PY benches/bench_simulation.py --rows-per-month 10000
bench "overhead ratios: MLflow calls, lifecycle / fit, wall / compute, slicing / pyarrow" $PY benches/bench_overhead.py
if [ "${BENCH_FULL:-0}" = 1 ]; then
  bench "the whole simulation at the Kaggle size" $PY benches/bench_simulation.py --rows-per-month kaggle
  bench "overhead ratios at the Kaggle size" $PY benches/bench_overhead.py --kaggle
fi

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit, with uncommitted changes"
{
  printf '# Benchmarks\n\n'
  printf 'Written by `make bench` (`scripts/bench.sh`) from what each bench printed; run it again\n'
  printf 'to refresh this page, do not edit it. Each bench compares against the obvious alternative\n'
  printf 'in the same run; times depend on the load, so read the ratios.\n\n'
  printf -- '- date: %s (finished %s)\n' "$started" "$(date -u '+%H:%M UTC')"
  printf -- '- machine: %s cores (`nproc`), %s\n' "$(nproc)" "$(uname -sm)"
  printf -- '- load average (1, 5, 15 min): %s at the start, %s at the end\n' "$load_start" "$(cut -d' ' -f1-3 /proc/loadavg)"
  printf -- '- commit: %s\n' "$commit"
  cat "$body"
} >"$page"
chmod 644 "$page"
mv "$page" "$PAGE"
echo
echo "wrote $PAGE"

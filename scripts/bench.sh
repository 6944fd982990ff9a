#!/usr/bin/env bash
# make bench: every benchmark, each printing its own comparison table. Sizes follow the
# issues: a 10 M-row source for slicing, a 10 M-row Kaggle-format CSV to import, 5 M rows for
# the kernel, 1k–100k runs for the watermark, all 78 months for the simulation. BENCH_FULL=1 adds the full Kaggle-size simulation.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
echo "== slicing (benches/bench_data.py)"; $PY benches/bench_data.py
echo; echo "== import (benches/bench_import.py)"; $PY benches/bench_import.py
echo; echo "== kernel (benches/bench_kernel.py)"; $PY benches/bench_kernel.py --months 7
echo; echo "== watermark (benches/bench_watermark.py)"; $PY benches/bench_watermark.py
echo; echo "== quality (benches/quality.py)"; $PY benches/quality.py
echo; echo "== quality on real rides, and the feature-v2 ablation (benches/quality_real.py)"; OMP_NUM_THREADS=1 $PY benches/quality_real.py
echo; echo "== promotion policies, backtested (benches/policy_backtest.py)"; $PY benches/policy_backtest.py --rows-per-month 10000 20000 --seeds 11 12 13
echo; echo "== one lifecycle versus one fit (benches/bench_lifecycle.py)"; $PY benches/bench_lifecycle.py
echo; echo "== one lifecycle inside BigQuery versus rows out, on the emulator (benches/bench_warehouse.py)"; $PY benches/bench_warehouse.py
echo; echo "== simulation (benches/bench_simulation.py)"; $PY benches/bench_simulation.py --rows-per-month 10000
if [ "${BENCH_FULL:-0}" = 1 ]; then
  echo; echo "== simulation at the Kaggle size"; $PY benches/bench_simulation.py --rows-per-month kaggle
fi

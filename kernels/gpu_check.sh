#!/usr/bin/env bash
# make gpu-check [DATA=folder]: on any CUDA machine, 5-fold CV of configs/gpu.yaml on a competition
# folder, then its submission; prints the GPU model, the precision chosen, the wall time of each fold
# and the CV figures (put them in docs/results.md). Needs `make install` first (the Makefile does it).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data/proxy}"
PY="${PY:-.venv/bin/python}"
OUT="${OUT_DIR:-build/gpu-check}"
mkdir -p "$OUT"
"$PY" - <<'PY'
import torch
if not torch.cuda.is_available():
    raise SystemExit("gpu-check: no CUDA device here (torch.cuda.is_available() is False)")
for i in range(torch.cuda.device_count()):
    major, minor = torch.cuda.get_device_capability(i)
    print(f"gpu-check: cuda:{i} {torch.cuda.get_device_name(i)} sm_{major}{minor}, torch {torch.__version__}")
PY
started=$(date +%s)
"$PY" -m fkd cv --data-dir "$DATA" --config configs/gpu.yaml --name gpu-check --runs-dir "$OUT/runs" \
    --device cuda 2>&1 | tee "$OUT/cv.log" | grep -E "^fold [0-9]+: |^run |precision|OOF"
"$PY" -m fkd submit --data-dir "$DATA" --runs "$OUT/runs/gpu-check" --name gpu-check --out-dir "$OUT/submissions"
"$PY" - "$OUT/runs/gpu-check/metrics.json" "$(( $(date +%s) - started ))" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"gpu-check: 5-fold OOF RMSE {m['rmse']:.4f} = {m['ratio_to_mean_shape']:.3f}x mean shape "
      f"(complete {m['rmse_complete']:.4f}, partial {m['rmse_partial']:.4f}); "
      f"training {m['train_seconds']:.0f} s, whole check {sys.argv[2]} s")
PY

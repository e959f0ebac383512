#!/usr/bin/env bash
# One short check on a CUDA machine: the image-folder extraction benchmark (bench_folder.py) with
# extract.device cuda, AMP (fp16 unless AMP=...), pinned memory (params.yaml pin_memory: true),
# the local backend and the ray backend with one GPU per actor (1 actor, and one per GPU when
# there are more), while nvidia-smi samples the GPU's utilisation every 200 ms. Writes
# $OUT (metrics/bench/gpu_check.json): bench_folder.py's folder_* keys, plus the mean GPU
# utilisation and peak memory over each phase (decode alone, model alone, local, ray_<actors>).
#
#   bash benchmarks/gpu_check.sh                 # 3,000 JPEGs; ~3-5 min on 16 cores + 1 GPU
#   N=256 bash benchmarks/gpu_check.sh           # a 1-minute smoke run
#
# Needs: the project's .venv (requirements.txt: torch with CUDA, ray[data]), nvidia-smi.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-metrics/bench/gpu_check.json}
N=${N:-3000}
AMP=${AMP:-fp16}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
NGPU=$(nvidia-smi -L | wc -l)
ACTORS=1
if [ "$NGPU" -gt 1 ]; then ACTORS="1,$NGPU"; fi
"$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'"

SAMPLES=$(mktemp)
nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used \
    --format=csv,noheader,nounits -lms 200 > "$SAMPLES" &
SMI=$!
trap 'kill "$SMI" 2>/dev/null || true; rm -f "$SAMPLES"' EXIT

"$PY" benchmarks/bench_folder.py --n-images "$N" --device cuda --amp "$AMP" \
    --ray-actors "$ACTORS" --out "$OUT"
kill "$SMI" 2>/dev/null || true
wait "$SMI" 2>/dev/null || true

"$PY" - "$SAMPLES" "$OUT" <<'EOF'
"""Mean utilisation (all GPUs together) and peak memory per benchmark phase, merged into OUT."""
import json
import sys
from datetime import datetime

from fclens.core.io import write_json

samples, out = sys.argv[1], sys.argv[2]
rows = []  # (time, gpu index, utilisation %, memory MiB)
for line in open(samples):
    f = [x.strip() for x in line.split(",")]
    try:
        rows.append((datetime.strptime(f[0], "%Y/%m/%d %H:%M:%S.%f"), int(f[1]), float(f[2]),
                     float(f[3])))
    except (ValueError, IndexError):  # a header or a torn last line
        continue
res = json.loads(open(out).read())
phases = res["folder_bench"]["phases"]
util, mem = {}, {}
for name, (start, end) in phases.items():
    a, b = datetime.fromisoformat(start), datetime.fromisoformat(end)
    inside = [r for r in rows if a <= r[0] <= b]
    if inside:
        util[name] = sum(r[2] for r in inside) / len(inside)
        mem[name] = max(r[3] for r in inside)
res.update(gpu_util_mean_pct=util, gpu_mem_max_mib=mem, gpu_samples=len(rows))
write_json(out, res, digits=4)
print(json.dumps({k: res[k] for k in res if k.startswith(("folder_", "gpu_"))
                  and k != "folder_bench"}, indent=1))
EOF

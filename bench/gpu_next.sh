#!/usr/bin/env bash
# The project's own GPU figures not yet measured, in one prepared run (docs/performance.md, the goal table).
#
#   OUT=/path/to/results bash bench/gpu_next.sh          # on the GPU machine, from the project's root (KT_BUDGET, default 400 s, wheel install included)
#   KT_DRY=1 OUT=/tmp/o bash bench/gpu_next.sh            # the plumbing on a CPU, tiny sizes (~3 min)
#
# Runs, in order of what matters most, each under its own time limit so one stuck step cannot take
# the others' time (a step that would not fit the budget is skipped, and says so), and writes
# each one's output to $OUT/<name>.txt (the table is its last lines), with $OUT/summary.txt listing
# every step's exit status and seconds:
#   1. lora-compile  bench/gpu_throughput.py --variants kubetune-compile,kubetune-lora-compile
#   2. gpu-memory    bench/gpu_memory.py (each masterWeights policy and LoRA against the memory model)
#   3. lean-layers   bench/lean_layers.py --shape 1b (transformers' norms and MLPs against the lean ones, full and LoRA)
#   4. loss-head     bench/loss_head.py at Llama 3's head (16,384 positions, hidden 2048, vocab 128,256)
#   5. lora-update   bench/lora_update.py --shape 1b (peft's LoRA forward against the fused one)
#   6. host-syncs    bench/gpu_throughput.py --variants kubetune --count-syncs (the host's waits for the GPU per step)
#   7. mla-attention bench/attention_kernels.py at DeepSeek's head sizes (query and key 192, values 128: varlen pads
#                    the values; does the flash kernel take them, and how fast against flex and the dense mask)
# The yardstick (../shared/gpu-bench/README.md) is a run of its own (about 400 s).
# The project's pinned wheels, where the GPU machine's python lacks them: .whl/ as the yardstick's
# README downloads them (KT_WHL_DIR), installed into KT_SITE (default /tmp/site) and put on the path
# (not in a dry run, unless KT_WHL_DIR is given).
set -u
OUT=${OUT:?set OUT to a folder for the results}
PYTHON=${KT_PYTHON:-python3}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
if [ "${KT_DRY:-0}" = "1" ]; then WHL=${KT_WHL_DIR:-}; else WHL=${KT_WHL_DIR:-.whl}; fi  # a dry run uses KT_PYTHON's own
if [ -n "$WHL" ] && compgen -G "$WHL/*.whl" > /dev/null; then
  SITE=${KT_SITE:-/tmp/site}
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHL"/*.whl \
    || { echo "wheel install from $WHL failed" | tee "$OUT/summary.txt"; exit 1; }
  export PYTHONPATH=$SITE:$PWD/operator:$PWD/trainer_image
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

if [ "${KT_DRY:-0}" = "1" ]; then
  THROUGHPUT=(--tiny --steps 6 --batch-size 2)
  LOSS_HEAD=(--tokens 512 --hidden 64 --vocab 3000 --chunk 128 --rounds 1)
  LORA_UPDATE=(--tokens 128 --steps 1 --rounds 1)
  LEAN=(--tokens 128 --steps 1 --rounds 1 --variants full-own,full-lean)  # 2 variants x 2 allocators on a CPU
  SYNCS=(--tiny --steps 6 --batch-size 2)
  MEMORY=(--layers 1 --tokens 256 --loss-tokens 3000 --vocab 3000)
  MLA=(--tokens 256 --heads 2 --kv-heads 2 --head-dim 24 --value-head-dim 16 --repeats 1)
else
  THROUGHPUT=(--steps 14)  # 9 measured after the 5 warm-up steps: two compiled variants within 200 s
  LOSS_HEAD=(--tokens 16384 --hidden 2048 --vocab 128256 --chunk 2092 --rounds 3)
  LORA_UPDATE=(--shape 1b --rounds 2)
  LEAN=(--shape 1b --tokens 16384 --steps 4 --rounds 1)
  MEMORY=()
  SYNCS=(--steps 8)  # 3 steps watched after the 5 warm-up steps
  MLA=(--tokens 8192 --heads 16 --kv-heads 16 --head-dim 192 --value-head-dim 128 --repeats 5)
fi

BUDGET=${KT_BUDGET:-400}  # seconds for the whole script: a step whose limit would pass it is skipped
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  if [ $((SECONDS + limit)) -gt "$BUDGET" ]; then
    echo "$name skipped: its ${limit}s would pass the ${BUDGET}s budget at ${SECONDS}s" | tee -a "$OUT/summary.txt"
    return
  fi
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$((SECONDS - start)) ($*)" | tee -a "$OUT/summary.txt"
}

: > "$OUT/summary.txt"
{ date -u; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"; git rev-parse --short HEAD; } >> "$OUT/summary.txt"
step lora-compile 200 "$PYTHON" bench/gpu_throughput.py --variants kubetune-compile,kubetune-lora-compile "${THROUGHPUT[@]}"
step gpu-memory 90 "$PYTHON" bench/gpu_memory.py "${MEMORY[@]}"
step lean-layers 80 "$PYTHON" bench/lean_layers.py "${LEAN[@]}"
step loss-head 45 "$PYTHON" bench/loss_head.py "${LOSS_HEAD[@]}"
step lora-update 60 "$PYTHON" bench/lora_update.py "${LORA_UPDATE[@]}"
step host-syncs 60 "$PYTHON" bench/gpu_throughput.py --variants kubetune --count-syncs "${SYNCS[@]}"
step mla-attention 40 "$PYTHON" bench/attention_kernels.py "${MLA[@]}"

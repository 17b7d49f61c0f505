#!/usr/bin/env bash
# The GPU benchmarks of docs/BENCHMARKS.md ("On a GPU") in one go, for a short GPU lease:
#   1. sampling throughput of the CIFAR-100-sized `full` model (issue 6's >= 2,000 images/s);
#   2. a DM-refinement screen (issue 7): variants of DM from sampled sets, each evaluated under
#      the challenge protocol (3 rounds), a minute of GPU where the CPU takes an hour;
#   3. one evaluator round, fast against straightforward (issue 3), on the GPU.
# Stages stop being started once DEADLINE_S seconds have passed, so the suite ends in time.
#
#   bash benchmarks/gpu_suite.sh OUT_DIR INIT_DIR [DEADLINE_S]     (ROUNDS=1: one round each)
#
# INIT_DIR holds the sampled (pre-DM) sets of the screen: ipc50_lr.sampled.safetensors,
# ipc10_default.sampled.safetensors and ipc1_plain.sampled.safetensors, as `gendd generate`
# leaves them beside its output. gendd must be importable and Fashion-MNIST findable (GENDD_DATA).
set -u
out=${1:?OUT_DIR}; init=${2:?INIT_DIR}; deadline=${3:-480}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
left() { (( SECONDS < deadline )); }

nvidia-smi -L 2>/dev/null
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'cuda', torch.cuda.is_available())"

echo "== sampling throughput ($SECONDS s)"
if left; then python3 benchmarks/bench_sampling_throughput.py --json-out "$out/throughput.json"
else echo "skipped (deadline)"; fi

echo "== DM screen ($SECONDS s)"
# Eager, as on any GPU by default (`evaluate.compile_enabled`); said explicitly for older trees.
screen() {  # IPC NAME JSON
    left || { echo "skipped $2 (deadline)"; return; }
    GENDD_COMPILE=0 timeout $(( deadline + 60 - SECONDS )) python3 benchmarks/refine_variants.py \
        "$init/$1" /tmp/screen "$2:$3" --rounds "${ROUNDS:-3}" \
        && python3 -c "import json,sys; r=json.load(open(sys.argv[1])); r['name']=sys.argv[2]; print(json.dumps(r))" \
            "/tmp/screen/$2.json" "$2" >> "$out/screen.jsonl"
}
s50=ipc50_lr.sampled.safetensors; s10=ipc10_default.sampled.safetensors; s1=ipc1_plain.sampled.safetensors
screen $s50 d50_default '{"iterations": 200, "mmd_weight": 250, "lr_img": 5.0}'
screen $s10 d10_default '{"iterations": 200, "mmd_weight": 250}'
screen $s50 d50_lr10 '{"iterations": 200, "mmd_weight": 250, "lr_img": 10.0}'
screen $s50 d50_it600 '{"iterations": 600, "mmd_weight": 250, "lr_img": 5.0}'
screen $s10 d10_it1000 '{"iterations": 1000, "mmd_weight": 250}'
screen $s10 d10_lr2 '{"iterations": 200, "mmd_weight": 250, "lr_img": 2.0}'
screen $s10 d10_b1024 '{"iterations": 200, "mmd_weight": 250, "batch_real": 1024}'
screen $s1 d1_default '{"iterations": 200, "lr_img": 0.1}'
screen $s1 d1_it1000 '{"iterations": 1000, "lr_img": 0.1}'
screen $s50 d50_lr10_it600 '{"iterations": 600, "mmd_weight": 250, "lr_img": 10.0}'

echo "== evaluator round ($SECONDS s)"
if left; then timeout $(( deadline + 70 - SECONDS )) python3 benchmarks/bench_evaluator.py \
    --quiet --json-out "$out/evaluator.json"
else echo "skipped (deadline)"; fi
echo "== done ($SECONDS s)"

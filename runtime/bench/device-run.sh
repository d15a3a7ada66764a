#!/usr/bin/env bash
# One device call: smoke, GPU-vs-CPU tests, benchmark (ours and PyTorch side by side).
cd "$(dirname "$0")"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH RUST_BACKTRACE=1 PYTHONUNBUFFERED=1
O=${OUT:-/tmp/out}; mkdir -p $O
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee $O/gpu.txt
echo "== smoke"
./ptm zoo make --arch tiny --tenants 3 --out /tmp/zt > /dev/null
for m in 000 001 002; do
  for d in cpu cuda; do
    timeout 60 ./ptm infer --model /tmp/zt/tiny-t$m --device $d --dtype fp16 --text "Hello world, the quick brown fox." --text gpu --json > $O/infer_${m}_$d.json 2>&1 || echo "infer $m $d FAILED"
  done
  python3 -c "import json,sys; a=json.load(open('$O/infer_${m}_cpu.json')); b=json.load(open('$O/infer_${m}_cuda.json')); print('$m', [max(abs(x-y) for x,y in zip(p['values'],q['values'])) for p,q in zip(a,b)])" || tail -5 $O/infer_${m}_cuda.json
done
echo "== bench ptm"
timeout 240 ./ptm bench infer --arch bert-base,bert-large --dtype fp16 --batch 1,8,32 --seq 128 --iters 200 --profile 2>&1 | tee $O/bench_ptm.txt
echo "== bench torch"
[ -n "$SKIP_TORCH" ] || timeout 180 python3 torch_bert.py --dtype fp16 --batch 1,8,32 --seq 128 --iters 200 2>&1 | grep -v Warning | tee $O/bench_torch.txt
echo "== gpu tests"
for t in gpu_equals_cpu-*; do
  PTM_TEST_CUDA=1 timeout 300 ./$t --test-threads 1 --nocapture 2>&1 | tee $O/gpu_tests.txt
done

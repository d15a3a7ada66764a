#!/usr/bin/env bash
# One device call for the issue-3 performance work: GPU-vs-CPU tests, then `ptm bench infer`
# with the default kernel options (fused single-pass attention, cuBLASLt, residual added by the
# layer norm), each option flipped by its A/B flag, PyTorch side by side, and cuBLAS's own time
# on the dense GEMM shapes. Logs under $OUT.
cd "$(dirname "$0")"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH RUST_BACKTRACE=1 PYTHONUNBUFFERED=1
O=${OUT:-/tmp/out}; mkdir -p $O
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee $O/gpu.txt
B="./ptm bench infer --dtype fp16 --seq 128"
if [ -z "$SKIP_TESTS" ]; then
  echo "== gpu tests"
  for t in gpu_equals_cpu-*; do
    PTM_TEST_CUDA=1 timeout 150 ./$t --test-threads 1 --nocapture 2>&1 | tee $O/gpu_tests.txt | grep -E "^test |panicked|worst|result" | cut -c1-400
  done
fi
echo "== bench ptm (default kernel options)"
timeout 200 $B --arch bert-base,bert-large --batch 1,8,32 --iters 200 --profile 2>&1 | tee $O/bench_ptm.txt
if [ -z "$SKIP_VARIANTS" ]; then
  for v in "--no-single-pass-attention" "--residual-epilogue" "--no-single-pass-attention --residual-epilogue" \
    "--no-fused-attention" "--no-cublaslt" "--no-fused-attention --no-cublaslt"; do
    echo "== bench ptm ($v)"
    timeout 100 $B --arch bert-base --batch 1,8,32 --iters 100 $v 2>&1 | tee -a $O/bench_variants.txt | grep -E "^\||^kernel options"
  done
fi
echo "== bench torch"
timeout 150 python3 torch_bert.py --dtype fp16 --batch 1,8,32 --seq 128 --iters 200 2>&1 | grep -v Warning | tee $O/bench_torch.txt
[ -n "$SKIP_GEMM" ] || timeout 60 python3 gemm_shapes.py --tokens 4096 2>&1 | tee $O/gemm_shapes.txt
echo "== summary"
grep "^|" $O/bench_ptm.txt; grep "^profile" $O/bench_ptm.txt | cut -c1-600; grep "^|" $O/bench_torch.txt

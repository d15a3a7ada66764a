#!/usr/bin/env bash
# One device call for issue 15 (first part): the segmented PET kernels against their CPU twins
# on the GPU, `ptm infer` (CPU reference) on LoRA tenants against Hugging Face transformers + peft
# loading the same files, and the peft set_adapter serving baseline.
# Expects ./ptm (cargo build --release -p ptm) and ./pet_gpu-* (the test binary of
# runtime/tests/pet_gpu.rs: cargo test -p ptm-runtime --test pet_gpu --no-run, then copy
# target/debug/deps/pet_gpu-<hash>) beside it, with the two python scripts. About 5 minutes.
cd "$(dirname "$0")"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH RUST_BACKTRACE=1 PYTHONUNBUFFERED=1
O=${OUT:-/tmp/out}; mkdir -p $O
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee $O/gpu.txt
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)" 2>&1 | tee $O/versions.txt
echo "== PET kernels vs CPU twins"
for t in pet_gpu-*; do
  PTM_TEST_CUDA=1 timeout 120 ./$t --test-threads 1 --nocapture > $O/pet_gpu_tests.txt 2>&1; echo "rc=$?" >> $O/pet_gpu_tests.txt
done
grep -E "test result|panicked|rc=" $O/pet_gpu_tests.txt
echo "== ptm infer (CPU) vs transformers + peft"
TEXTS=(--text "The quick brown fox jumps over the lazy dog." --text "gpu" --text "Parameter-efficient tenants share one backbone; each adds its own small delta.")
for arch in tiny bert-base; do
  Z=/tmp/pet-$arch
  ./ptm zoo make --arch $arch --pet lora --rank 8 --targets query,value --tenants 6 --dtype fp32 --out $Z > $O/zoo_$arch.txt
  for dt in fp32 fp16 bf16; do
    args=()
    for t in 0 1 2; do
      m=$Z/$arch-lora-t00$t
      ./ptm infer --model $m --dtype $dt --json "${TEXTS[@]}" > $O/ptm_${arch}_${dt}_$t.json || echo "ptm infer $m $dt FAILED"
      args+=(--tenant $m --ptm-json $O/ptm_${arch}_${dt}_$t.json)
    done
    timeout 300 python3 peft_reference.py --dtype $dt "${args[@]}" 2>&1 | grep -v -i warn | tee $O/peft_${arch}_$dt.txt | tail -1
  done
done
echo "== peft serving baseline (set_adapter, one request at a time)"
./ptm zoo make --arch bert-base --pet lora --rank 8 --targets query,value --tenants 300 --dtype fp16 --out /tmp/pet-serve > /dev/null
timeout 300 python3 peft_serve_baseline.py --zoo /tmp/pet-serve --adapters 100 --requests 2000 --texts 4 --seq 128 --dtype fp16 2>&1 | grep -v -i warn | tee $O/peft_serve.txt

#!/usr/bin/env bash
# One device call for issue 4: GPU switching tests, `ptm bench switch` on BERT-base and
# BERT-large fp16 zoos made on the machine, and the PyTorch switch baseline in the same call.
# Expects ./ptm, ./switching_gpu-* and ./torch_switch.py beside it.
cd "$(dirname "$0")"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH RUST_BACKTRACE=1 PYTHONUNBUFFERED=1
O=${OUT:-/tmp/out}; mkdir -p $O
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee $O/gpu.txt
echo "== gpu tests"
for t in switching_gpu-*; do
  PTM_TEST_CUDA=1 timeout 200 ./$t --test-threads 1 --nocapture > $O/gpu_tests.txt 2>&1; echo "rc=$?" >> $O/gpu_tests.txt
done
grep -E "bit-identical|test result|panicked|SlotBudget|rc=" $O/gpu_tests.txt
echo "== zoos"
SECONDS=0
./ptm zoo make --arch bert-base --tenants 4 --dtype fp16 --out /tmp/zoos/bert-base > /dev/null &
./ptm zoo make --arch bert-large --tenants 3 --dtype fp16 --out /tmp/zoos/bert-large > /dev/null &
wait; echo "zoos made in ${SECONDS} s"; du -sh /tmp/zoos/*
echo "== bench ptm"
timeout 240 ./ptm bench switch --zoo /tmp/zoos --iters ${ITERS:-40} --baseline-iters ${BITERS:-5} > $O/bench_switch.txt 2>&1; echo "rc=$?" >> $O/bench_switch.txt
echo "== bench torch"
timeout 200 python3 torch_switch.py --iters ${ITERS:-40} 2>&1 | grep -v -i warn > $O/bench_torch.txt
echo "== results"
grep -v "^|" $O/bench_switch.txt | tail -30
grep "^|" $O/bench_switch.txt
grep "^|" $O/bench_torch.txt || tail -20 $O/bench_torch.txt

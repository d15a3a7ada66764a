#!/usr/bin/env bash
# Times `ptm zoo make --pet …` for BERT-base fp16 PET zoos (10,000 LoRA and BitFit tenants,
# 1,000 Houlsby and Pfeiffer adapter tenants) and reports their sizes; each zoo is deleted after
# it is measured. Usage: pet-zoo-time.sh PTM_BINARY [SCRATCH_DIR (default /dev/shm)].
set -e
P=${1:?ptm binary}; S=${2:-/dev/shm}
echo "machine: $(nproc) cores, $(uname -m); scratch: $S ($(df -h $S | tail -1 | awk '{print $1}'))"
for args in "--pet lora --rank 8 --targets query,value --tenants 10000" \
            "--pet bitfit --tenants 10000" \
            "--pet adapter --placement houlsby --reduction-factor 16 --tenants 1000" \
            "--pet adapter --placement pfeiffer --reduction-factor 16 --tenants 1000"; do
  Z=$S/pet-zoo-time; rm -rf $Z
  echo "== ptm zoo make --arch bert-base $args --dtype fp16 --out $Z"
  $P zoo make --arch bert-base $args --dtype fp16 --out $Z | grep -E "backbone|tenants:"
  echo "files: $(find $Z -type f | wc -l), apparent bytes on disk: $(du -s --apparent-size --block-size=1 $Z | cut -f1)"
  rm -rf $Z
done

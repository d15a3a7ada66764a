#!/usr/bin/env bash
# Compiles runtime/src/gpu/kernels.cu to PTX with clang (no CUDA toolkit or GPU needed) for
# each dtype configuration the runtime compiles it in, and prints per kernel the count of the
# instructions that carry its numerics (mma, shared-memory loads, ex2, conversions, shuffles,
# barriers, FMAs) — twice, for two git revisions, with the kernels whose counts differ. How the
# issue-11 refactor of the attention kernels was checked before any GPU ran it. clang's PTX is
# not NVRTC's: equal counts say the same operations remain, not that the GPU's code is equal.
# Usage (repository root): runtime/bench/kernels-ptx.sh [BASE_REV] [NEW_REV]   (default: HEAD~1 HEAD;
# NEW_REV "work" = the working tree). Needs clang-14 (`apt-get install clang-14`).
set -eu
BASE=${1:-HEAD~1}; NEW=${2:-HEAD}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cat > "$T/prelude.h" <<'H'
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __shared__ __attribute__((shared))
#define __forceinline__ __attribute__((always_inline)) inline
#define __launch_bounds__(...) __attribute__((launch_bounds(__VA_ARGS__)))
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict
#include <__clang_cuda_builtin_vars.h>
struct __attribute__((aligned(16))) uint4 { unsigned x, y, z, w; };
struct __attribute__((aligned(8))) uint2 { unsigned x, y; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(16))) int4 { int x, y, z, w; };
__device__ inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { uint4 r = {a, b, c, d}; return r; }
__device__ inline float4 make_float4(float a, float b, float c, float d) { float4 r = {a, b, c, d}; return r; }
extern "C" __device__ float erff(float); extern "C" __device__ float tanhf(float);
extern "C" __device__ float expf(float); extern "C" __device__ float rsqrtf(float);
extern "C" __device__ float sqrtf(float); extern "C" __device__ float fmaxf(float, float);
extern "C" __device__ float fmaf(float, float, float);
__device__ inline float __int_as_float(int x) { return __builtin_bit_cast(float, x); }
__device__ inline float __uint_as_float(unsigned x) { return __builtin_bit_cast(float, x); }
extern __device__ float __shfl_xor_sync(unsigned, float, int);
extern "C" __device__ void __syncthreads();
__device__ inline int min(int a, int b) { return a < b ? a : b; }
// The activation codes runtime/src/activation.rs writes (older revisions ignore them).
#define ACT_IDENTITY 0
#define ACT_GELU_ERF 1
#define ACT_GELU_TANH 2
#define ACT_RELU 3
#define ACT_TANH 4
H
ptx() {  # REV OUTDIR
  mkdir -p "$2"
  if [ "$1" = work ]; then cp runtime/src/gpu/kernels.cu "$2/k.cu"; else git show "$1:runtime/src/gpu/kernels.cu" > "$2/k.cu"; fi
  for cfg in "F32 0 0 0" "F16 1 1 0" "BF16 0 1 1"; do
    set -- $cfg
    printf '#define DTYPE %s\n#define SCORES_IN_T %s\n#define HALF_MMA %s\n#define IS_BF16 %s\n' "$@" | cat - "$OUTDIR/k.cu" > "$OUTDIR/$1.cu"
    clang-14 -x cuda --cuda-device-only --cuda-gpu-arch=sm_86 -nocudainc -nocudalib -O3 \
      -include "$T/prelude.h" -S -o "$OUTDIR/$1.ptx" "$OUTDIR/$1.cu"
  done
}
OUTDIR="$T/base"; ptx "$BASE" "$OUTDIR"
OUTDIR="$T/new"; ptx "$NEW" "$OUTDIR"
python3 - "$T" <<'PY'
import collections, re, sys
KEY = ("mma", "ld.shared", "st.shared", "ex2", "cvt.rn", "shfl", "bar", "fma")
def kernels(path):
    s = open(path).read()
    out = {}
    for m in re.finditer(r"\.visible \.entry (\w+)\((.*?)\n}\n", s, re.S):
        c = collections.Counter()
        for line in m.group(2).splitlines():
            w = line.split()
            if not w or w[0].startswith(("//", ".", "{", "}", "$")) or w[0].endswith(":"):
                continue
            op = w[1] if w[0].startswith("@") and len(w) > 1 else w[0]
            if op.startswith(KEY):
                c[op] += 1
        out[m.group(1)] = c
    return out
t = sys.argv[1]
for d in ("F32", "F16", "BF16"):
    a, b = kernels(f"{t}/base/{d}.ptx"), kernels(f"{t}/new/{d}.ptx")
    same = [k for k in a if a[k] == b.get(k)]
    print(f"{d}: {len(same)} of {len(a)} kernels with the same key-instruction counts")
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            diff = {op: (a.get(k, {}).get(op, 0), b.get(k, {}).get(op, 0))
                    for op in set(a.get(k, {})) | set(b.get(k, {}))
                    if a.get(k, {}).get(op, 0) != b.get(k, {}).get(op, 0)}
            print(f"  {k}: base → new {dict(sorted(diff.items()))}")
PY

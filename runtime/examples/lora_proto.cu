// Prototype LoRA kernels for the mixed pass's Q/V step (issue 15's 0.9× target), measured and
// checked by `runtime/examples/lora_kernels.rs` only: appended there after the runtime's PET
// source (`gpu::pet::source`: `#define DTYPE`, dtype.cuh, pet_kernels.cu, pet_tiled_kernels.cu,
// pet_fused_kernels.cu), whose types and helpers (`LoraSeg`, `seg_scan`, `seg_of`, `ranks_of`,
// `pairs_of`, `lane_dot`, PET_V) they use. Not part of the runtime (its build identity is
// unchanged); same arguments as `pet_lora_shrink_tiled` / `pet_lora_expand_tiled_t`.
//
//   shrink  a warp per row of a segment with pairs: the row's x read once per 16-byte step and
//           dotted against up to PX_JG (16) of the tenant's A rows (over its sites) at once —
//           rank 8 on Q and V is one group, so x is read once (the row kernels of part y read
//           it once per site and reduced each sum by its own 5-shuffle butterfly: 80 shuffles a
//           row, here 16).
//   expand  a warp per (segment, PX_RT (4) consecutive rows of it, site with a pair, 32 lanes ×
//           PX_CT (4) consecutive output columns): each lane converts its 4 columns' B rows to
//           f32 once (PX_QC rank entries at a time) and uses them for the 4 rows: per output
//           about 8 FMAs plus 4 instructions of conversion and packing, against ~50 for a thread
//           that converts B for one row (part y). Every old value of the item is read (one
//           8-byte load a row for 16-bit outputs, 16 bytes for f32) before any store.
//
// Bit-equal to the warp, tiled and fused kernels (the example checks it on the GPU):
//   shrink  per (row, j): lane l sums x[q]·A[j][q] over its 16-byte slices l·V + 32·V·m (or
//           q = l + 32·m where x's row or A's row is not 16-byte aligned or in % V != 0), as
//           `lane_dot`; then the lanes' sums are added in the tree of `warp_sum` (pairs of lanes
//           xor 16, then 8, 4, 2, 1). The PX_JG sums are reduced together ("transposed"): at
//           the xor-16 step a lane keeps the half of the sums its half-warp will finish and
//           sends the other half, … — each addition pairs the same two partial sums as
//           `warp_sum` would (a + b = b + a exactly), so every sum is the same bits; lane
//           2·m ends holding sum number rev4(m) (its lane bits 4..1 read as a number the other
//           way round). t = round(sum).
//   expand  per (row, c): acc = 0; acc += t[q]·B[c][q] for q in order (`row_dot`), then
//           round(y + acc·scale) — the same expressions as `pet_lora_expand_tiled_t`.
//
// Registers per thread (NVRTC 13 for compute_90, then `ptxas -arch=sm_90 -v`, on the
// runtime's source with this file appended), no spills and no stack in any dtype; blocks of
// 256 one multiprocessor holds at once (65,536 registers, allocated by warp in 256s):
//   pet_lora_shrink_proto     F16 82 (2 blocks), BF16 72 (3), F32 78 (3) — most of them the
//                             16 A slices of a step loaded before their FMAs;
//   pet_lora_expand_proto_t   F16 128 (2), BF16 128 (2), F32 121 (2).
// `__launch_bounds__(256, 3)` (80 registers) spills both kernels (expand 160 bytes in F16),
// `(256, 4)` more: left out. For comparison the tiled expand uses 255 and spills 16 bytes.

// A rows a shrink warp dots its x row against at once (the reduction below is written for 16).
#define PX_JG 16
// Rows of an expand item.
#define PX_RT 4
// Consecutive output columns of a lane.
#define PX_CT 4
// Rank entries of B and t converted at once.
#define PX_QC 8
// The most warps of a block (1024 threads).
#define PX_MAXW 32

// The sums acc[0..16) of the 32 lanes added in `warp_sum`'s tree; lane l returns the sum of
// acc[g] with g = 8·b4 + 4·b3 + 2·b2 + b1 (b_i: bit i of l) — both lanes of a pair hold it.
__device__ __forceinline__ float warp_sum16(const float (&acc)[16], int lane) {
  bool b4 = lane & 16, b3 = lane & 8, b2 = lane & 4, b1 = lane & 2;
  float h8[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    float keep = b4 ? acc[i + 8] : acc[i], send = b4 ? acc[i] : acc[i + 8];
    h8[i] = keep + __shfl_xor_sync(0xffffffffu, send, 16);
  }
  float h4[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float keep = b3 ? h8[i + 4] : h8[i], send = b3 ? h8[i] : h8[i + 4];
    h4[i] = keep + __shfl_xor_sync(0xffffffffu, send, 8);
  }
  float h2[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float keep = b2 ? h4[i + 2] : h4[i], send = b2 ? h4[i] : h4[i + 2];
    h2[i] = keep + __shfl_xor_sync(0xffffffffu, send, 4);
  }
  float keep = b1 ? h2[1] : h2[0], send = b1 ? h2[0] : h2[1];
  float h1 = keep + __shfl_xor_sync(0xffffffffu, send, 2);
  return h1 + __shfl_xor_sync(0xffffffffu, h1, 1);
}

// `pet_lora_shrink` a warp a row, all of the row's A rows (up to PX_JG) at once.
extern "C" __global__ void pet_lora_shrink_proto(const T* x, long ld_x, const int* seg_start,
                                                 const LoraSeg* segs, int nseg, int nsite, T* t,
                                                 long ld_t, int t_site_cols, int in_dim) {
  __shared__ long long pre[PET_MAX_SEG + 1];
  __shared__ const T* wa[PX_MAXW][PX_JG];  // each warp's group of A rows
  long long total = seg_scan(
      nseg,
      [&](int s) -> long long {
        int rows = seg_start[s + 1] - seg_start[s];
        return rows > 0 && ranks_of(segs, s, nsite) > 0 ? rows : 0;
      },
      pre);
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  bool vdim = in_dim % PET_V == 0;
  // The sum this lane ends with (see warp_sum16).
  int mine = ((lane >> 4) & 1) * 8 + ((lane >> 3) & 1) * 4 + ((lane >> 2) & 1) * 2 +
             ((lane >> 1) & 1);
  for (long long it = (long long)blockIdx.x * nw + w; it < total; it += (long long)gridDim.x * nw) {
    int s = seg_of(pre, nseg, it);
    long row = seg_start[s] + (long)(it - pre[s]);
    int r = ranks_of(segs, s, nsite);
    const T* xr = x + row * ld_x;
    bool xvec = vdim && (reinterpret_cast<size_t>(xr) & 15) == 0;
    for (int g0 = 0; g0 < r; g0 += PX_JG) {
      int ng = min(PX_JG, r - g0);
      // Lane f < ng: A row g0 + f of the segment (over its sites) and its column of t.
      const T* my_a = 0;
      int my_col = 0;
      bool my_vec = true;
      if (lane < ng) {
        int j = g0 + lane, k = 0;
        for (; k < nsite; ++k) {
          const LoraSeg& g = segs[s * nsite + k];
          int rk = g.a ? g.rank : 0;
          if (j < rk) break;
          j -= rk;
        }
        my_a = segs[s * nsite + k].a + (long)j * in_dim;
        my_col = k * t_site_cols + j;
        my_vec = (reinterpret_cast<size_t>(my_a) & 15) == 0;
      }
      __syncwarp();  // the previous group is done reading wa
      if (lane < PX_JG) wa[w][lane] = my_a;
      __syncwarp();
      bool all_vec = __all_sync(0xffffffffu, my_vec) && xvec;
      float acc[PX_JG];
#pragma unroll
      for (int g = 0; g < PX_JG; ++g) acc[g] = 0.f;
      if (all_vec) {
        for (int q = lane * PET_V; q < in_dim; q += 32 * PET_V) {
          uint4 ux = *reinterpret_cast<const uint4*>(xr + q);
          const T* px = reinterpret_cast<const T*>(&ux);
          float xf[PET_V];
#pragma unroll
          for (int i = 0; i < PET_V; ++i) xf[i] = D::ld(px[i]);
#pragma unroll
          for (int g = 0; g < PX_JG; ++g) {
            if (g < ng) {
              uint4 ua = *reinterpret_cast<const uint4*>(wa[w][g] + q);
              const T* pa = reinterpret_cast<const T*>(&ua);
#pragma unroll
              for (int i = 0; i < PET_V; ++i) acc[g] += xf[i] * D::ld(pa[i]);
            }
          }
        }
      } else {
        // As `lane_dot` per A row: 16-byte slices where both rows allow, strided otherwise.
#pragma unroll
        for (int g = 0; g < PX_JG; ++g) {
          if (g < ng) {
            const T* ar = wa[w][g];
            acc[g] = lane_dot(xr, ar, in_dim, lane,
                              xvec && (reinterpret_cast<size_t>(ar) & 15) == 0);
          }
        }
      }
      float v = warp_sum16(acc, lane);
      int col = __shfl_sync(0xffffffffu, my_col, mine);
      if ((lane & 1) == 0 && mine < ng) t[row * ld_t + col] = D::st(v);
    }
  }
}

// 4 consecutive outputs as one load or store: 8 bytes for 16-bit values, 16 for f32.
template <int BYTES> struct PxVec;
template <> struct PxVec<8> { typedef uint2 V; };
template <> struct PxVec<16> { typedef uint4 V; };

// PX_QC entries of a B or t row from `p` as f32 (`n` of them, zeros after): a whole chunk as
// pet_fused_kernels.cu's `fused_load_b` reads it (16-byte loads where the row is aligned).
static_assert(PX_QC == 8, "fused_load_b reads 8 entries");
__device__ __forceinline__ void px_load(const T* p, int n, float* f) {
  if (n == PX_QC) {
    fused_load_b(p, f);
  } else {
#pragma unroll
    for (int q = 0; q < PX_QC; ++q) f[q] = q < n ? D::ld(p[q]) : 0.f;
  }
}

// `lora_expand` by register tiles (see the top of the file). `combine(old, v)`: the stored value
// of an output whose value was `old`, plus `v`.
template <typename Out, typename Combine>
__device__ void lora_expand_proto(const T* t, long ld_t, int t_site_cols, const int* seg_start,
                                  const LoraSeg* segs, int nseg, int nsite, Out* y, long ld_y,
                                  long y_site_stride, int out_dim, Combine combine) {
  typedef typename PxVec<PX_CT * sizeof(Out)>::V V;
  __shared__ long long pre[PET_MAX_SEG + 1];
  const int span = 32 * PX_CT;
  int nspan = (out_dim + span - 1) / span;
  long long total = seg_scan(
      nseg,
      [&](int s) -> long long {
        int rows = seg_start[s + 1] - seg_start[s], p = pairs_of(segs, s, nsite);
        if (rows <= 0 || p == 0) return 0;
        return (long long)((rows + PX_RT - 1) / PX_RT) * p * nspan;
      },
      pre);
  int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  for (long long it = (long long)blockIdx.x * nw + (threadIdx.x >> 5); it < total;
       it += (long long)gridDim.x * nw) {
    int s = seg_of(pre, nseg, it);
    int p = pairs_of(segs, s, nsite);
    long long k0 = it - pre[s];
    int c = (int)(k0 % nspan) * span + lane * PX_CT;
    long long k1 = k0 / nspan;
    int nth = (int)(k1 % p), grp = (int)(k1 / p), k = 0;
    for (; k < nsite; ++k) {
      if (segs[s * nsite + k].b == 0) continue;
      if (nth == 0) break;
      --nth;
    }
    int ncol = min(PX_CT, out_dim - c);
    if (ncol <= 0) continue;  // no warp-wide operations below
    LoraSeg g = segs[s * nsite + k];
    int row0 = seg_start[s] + grp * PX_RT;
    int nrows = min(PX_RT, seg_start[s + 1] - row0);
    Out* y0 = y + k * y_site_stride + (long)row0 * ld_y + c;
    bool yvec = ncol == PX_CT &&
                ((reinterpret_cast<size_t>(y0) | (size_t)ld_y * sizeof(Out)) % sizeof(V)) == 0;
    // The item's old outputs, all read before any store (each output belongs to one item).
    V old[PX_RT];
#pragma unroll
    for (int rr = 0; rr < PX_RT; ++rr) {
      if (rr < nrows) {
        const Out* yr = y0 + (long)rr * ld_y;
        if (yvec) {
          old[rr] = *reinterpret_cast<const V*>(yr);
        } else {
          Out* o = reinterpret_cast<Out*>(&old[rr]);
#pragma unroll
          for (int i = 0; i < PX_CT; ++i)
            if (i < ncol) o[i] = yr[i];
        }
      }
    }
    float acc[PX_RT][PX_CT];
#pragma unroll
    for (int rr = 0; rr < PX_RT; ++rr)
#pragma unroll
      for (int i = 0; i < PX_CT; ++i) acc[rr][i] = 0.f;
    const T* tb = t + (long)row0 * ld_t + (long)k * t_site_cols;
    for (int q0 = 0; q0 < g.rank; q0 += PX_QC) {
      int n = min(PX_QC, g.rank - q0);
      // The lane's columns' B entries q0.. as f32, once for the item's rows.
      float b[PX_CT][PX_QC];
#pragma unroll
      for (int i = 0; i < PX_CT; ++i) {
        if (i < ncol) {
          px_load(g.b + (long)(c + i) * g.rank + q0, n, b[i]);
        } else {
#pragma unroll
          for (int q = 0; q < PX_QC; ++q) b[i][q] = 0.f;
        }
      }
#pragma unroll
      for (int rr = 0; rr < PX_RT; ++rr) {
        if (rr < nrows) {
          float tq[PX_QC];
          px_load(tb + (long)rr * ld_t + q0, n, tq);
          if (n == PX_QC) {
#pragma unroll
            for (int q = 0; q < PX_QC; ++q)
#pragma unroll
              for (int i = 0; i < PX_CT; ++i) acc[rr][i] += tq[q] * b[i][q];
          } else {
            // A partial chunk (ranks not a multiple of PX_QC): only the rank's entries.
#pragma unroll
            for (int q = 0; q < PX_QC; ++q)
              if (q < n)
#pragma unroll
                for (int i = 0; i < PX_CT; ++i) acc[rr][i] += tq[q] * b[i][q];
          }
        }
      }
    }
#pragma unroll
    for (int rr = 0; rr < PX_RT; ++rr) {
      if (rr < nrows) {
        Out* yr = y0 + (long)rr * ld_y;
        const Out* o = reinterpret_cast<const Out*>(&old[rr]);
        V nv;
        Out* pn = reinterpret_cast<Out*>(&nv);
#pragma unroll
        for (int i = 0; i < PX_CT; ++i) pn[i] = combine(o[i], acc[rr][i] * g.scale);
        if (yvec) {
          *reinterpret_cast<V*>(yr) = nv;
        } else {
#pragma unroll
          for (int i = 0; i < PX_CT; ++i)
            if (i < ncol) yr[i] = pn[i];
        }
      }
    }
  }
}

// `pet_lora_expand_tiled_t` by register tiles (same arguments): y = round(y + delta).
extern "C" __global__ void pet_lora_expand_proto_t(const T* t, long ld_t, int t_site_cols,
                                                   const int* seg_start, const LoraSeg* segs,
                                                   int nseg, int nsite, T* y, long ld_y,
                                                   long y_site_stride, int out_dim) {
  lora_expand_proto(t, ld_t, t_site_cols, seg_start, segs, nseg, nsite, y, ld_y, y_site_stride,
                    out_dim, [](T o, float v) { return D::st(D::ld(o) + v); });
}

// Row-streaming LoRA kernels (kernel option `pet_rows`), appended after pet_fused_kernels.cu
// (pet_tiled_kernels.cu's `lane_dot`, pet_kernels.cu's types and helpers).
//
// The tiled and fused kernels take tiles of one segment's rows as work items, a few per
// multiprocessor, each a chain of dependent trips to memory: on the H200 each of them takes
// 22–37 µs a launch for the Q and V deltas of 4,096 rows, where the bytes they must move take
// about 6 (`runtime/examples/lora_kernels.rs`, BENCHMARKS.md). Here work is spread as thinly
// as the data allows, so that many independent loads are in flight at once:
//   shrink  one warp a row (the row looks its own segment up): the row's x read by the lanes
//           as the tiled shrink reads it, PET_SJ of the tenant's A rows at a time from
//           global memory (L1/L2: one tenant's A is a few tens of KB), t written to memory;
//   expand  one thread a vector of PET_RC consecutive output columns of one (row, site):
//           one 16-byte read of y (two for f32), the row's t and the columns' B rows, one
//           write — every load of a thread independent of the others.
// Each output is computed exactly as the warp and tiled kernels compute it (tests/
// pet_tiled_gpu.rs checks it bit for bit on a GPU):
//   shrink  per (row, j): lane l's part as `lane_dot` (16-byte slices where in_dim % V == 0 and
//           both rows are 16-byte aligned, strided scalars otherwise), `warp_sum`, t = round;
//   expand  per (row, c): Σ_q t[q]·B[c][q] in q order from 0, times scale, stored as `y + v`
//           (rounded to the model dtype for a model-dtype y).
// Any rank and any number of sites: t goes through memory, as with the tiled kernels.

// A rows a warp dots its x row against at once.
#define PET_SJ 8
// Output columns of an expand vector.
#define PET_RC 8

// The segment of `row` (< seg_start[nseg]): the last s < nseg with seg_start[s] <= row, a
// non-empty one.
__device__ __forceinline__ int seg_of_row(const int* seg_start, int nseg, int row) {
  int lo = 0, hi = nseg - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) >> 1;
    if (seg_start[mid] <= row) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// `pet_lora_shrink` a warp a row (same arguments).
extern "C" __global__ __launch_bounds__(256) void pet_lora_shrink_rows(
    const T* x, long ld_x, const int* seg_start, const LoraSeg* segs, int nseg, int nsite,
    T* t, long ld_t, int t_site_cols, int in_dim) {
  int lane = threadIdx.x & 31;
  int warps = (int)(gridDim.x * blockDim.x) >> 5;
  int rows_total = seg_start[nseg];
  bool vdim = in_dim % PET_V == 0;
  for (int row = (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5); row < rows_total;
       row += warps) {
    int s = seg_of_row(seg_start, nseg, row);
    const LoraSeg* gs = segs + (long)s * nsite;
    const T* xr = x + (long)row * ld_x;
    bool xvec = vdim && (reinterpret_cast<size_t>(xr) & 15) == 0;
    T* tr = t + (long)row * ld_t;
    for (int k = 0; k < nsite; ++k) {
      LoraSeg g = gs[k];
      if (g.a == 0) continue;
      for (int j0 = 0; j0 < g.rank; j0 += PET_SJ) {
        int ng = min(PET_SJ, g.rank - j0);
        const T* a0 = g.a + (long)j0 * in_dim;
        // Rows of one A are in_dim apart: all aligned where the first is and in_dim % V == 0.
        bool all_vec = xvec && (reinterpret_cast<size_t>(a0) & 15) == 0;
        float acc[PET_SJ];
        if (all_vec) {
#pragma unroll
          for (int h = 0; h < PET_SJ; ++h) acc[h] = 0.f;
          for (int q = lane * PET_V; q < in_dim; q += 32 * PET_V) {
            uint4 ux = *reinterpret_cast<const uint4*>(xr + q);
            const T* px = reinterpret_cast<const T*>(&ux);
#pragma unroll
            for (int h = 0; h < PET_SJ; ++h) {
              if (h < ng) {
                uint4 ua = *reinterpret_cast<const uint4*>(a0 + (long)h * in_dim + q);
                const T* pa = reinterpret_cast<const T*>(&ua);
#pragma unroll
                for (int i = 0; i < PET_V; ++i) acc[h] += D::ld(px[i]) * D::ld(pa[i]);
              }
            }
          }
        } else {
#pragma unroll
          for (int h = 0; h < PET_SJ; ++h) {
            acc[h] = 0.f;
            if (h < ng) {
              const T* ar = a0 + (long)h * in_dim;
              acc[h] = lane_dot(xr, ar, in_dim, lane,
                                xvec && (reinterpret_cast<size_t>(ar) & 15) == 0);
            }
          }
        }
#pragma unroll
        for (int h = 0; h < PET_SJ; ++h) {
          if (h < ng) {
            float v = warp_sum(acc[h]);
            if (lane == 0) tr[(long)k * t_site_cols + j0 + h] = D::st(v);
          }
        }
      }
    }
  }
}

// `lora_expand` a thread a vector of PET_RC columns of one (row, site).
// `combine(old, v)`: the stored value of an output whose value was `old`, plus `v`.
template <typename Out, typename Combine>
__device__ void lora_expand_rows(const T* t, long ld_t, int t_site_cols, const int* seg_start,
                                 const LoraSeg* segs, int nseg, int nsite, Out* y, long ld_y,
                                 long y_site_stride, int out_dim, Combine combine) {
  const int words = PET_RC * (int)sizeof(Out) / 16;  // 16-byte words of a vector
  int ngroup = (out_dim + PET_RC - 1) / PET_RC;
  long per_row = (long)nsite * ngroup;
  long total = (long)seg_start[nseg] * per_row;
  long stride = (long)gridDim.x * blockDim.x;
  for (long e = (long)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
    int row = (int)(e / per_row);
    int rem = (int)(e % per_row);
    int k = rem / ngroup, c0 = (rem % ngroup) * PET_RC;
    int s = seg_of_row(seg_start, nseg, row);
    LoraSeg g = segs[(long)s * nsite + k];
    if (g.b == 0) continue;
    int nc = min(PET_RC, out_dim - c0);
    Out* yp = y + k * y_site_stride + (long)row * ld_y + c0;
    bool vec = nc == PET_RC && (reinterpret_cast<size_t>(yp) & 15) == 0;
    uint4 old[PET_RC * sizeof(Out) / 16];
    Out* o = reinterpret_cast<Out*>(old);
    if (vec) {
#pragma unroll
      for (int v = 0; v < words; ++v) old[v] = reinterpret_cast<const uint4*>(yp)[v];
    } else {
#pragma unroll
      for (int i = 0; i < PET_RC; ++i)
        if (i < nc) o[i] = yp[i];
    }
    const T* tr = t + (long)row * ld_t + (long)k * t_site_cols;
    float acc[PET_RC];
#pragma unroll
    for (int i = 0; i < PET_RC; ++i) acc[i] = 0.f;
    for (int q0 = 0; q0 < g.rank; q0 += 8) {
      int n = min(8, g.rank - q0);
      if (n == 8) {
        float tq[8];
        fused_load_b(tr + q0, tq);
#pragma unroll
        for (int i = 0; i < PET_RC; ++i) {
          if (i < nc) {
            float b[8];
            fused_load_b(g.b + (long)(c0 + i) * g.rank + q0, b);
#pragma unroll
            for (int q = 0; q < 8; ++q) acc[i] += tq[q] * b[q];
          }
        }
      } else {
        // A partial chunk (ranks not a multiple of 8): entry by entry.
#pragma unroll
        for (int i = 0; i < PET_RC; ++i) {
          if (i < nc) {
            const T* br = g.b + (long)(c0 + i) * g.rank + q0;
            for (int q = 0; q < n; ++q) acc[i] += D::ld(tr[q0 + q]) * D::ld(br[q]);
          }
        }
      }
    }
    uint4 raw[PET_RC * sizeof(Out) / 16];
    Out* out = reinterpret_cast<Out*>(raw);
#pragma unroll
    for (int i = 0; i < PET_RC; ++i)
      if (i < nc) out[i] = combine(o[i], acc[i] * g.scale);
    if (vec) {
#pragma unroll
      for (int v = 0; v < words; ++v) reinterpret_cast<uint4*>(yp)[v] = raw[v];
    } else {
#pragma unroll
      for (int i = 0; i < PET_RC; ++i)
        if (i < nc) yp[i] = out[i];
    }
  }
}

// `pet_lora_expand_f32` a thread a vector (same arguments).
extern "C" __global__ __launch_bounds__(256) void pet_lora_expand_rows_f32(
    const T* t, long ld_t, int t_site_cols, const int* seg_start, const LoraSeg* segs, int nseg,
    int nsite, float* y, long ld_y, long y_site_stride, int out_dim) {
  lora_expand_rows(t, ld_t, t_site_cols, seg_start, segs, nseg, nsite, y, ld_y, y_site_stride,
                   out_dim, [](float o, float v) { return o + v; });
}

// `pet_lora_expand_t` a thread a vector (same arguments).
extern "C" __global__ __launch_bounds__(256) void pet_lora_expand_rows_t(
    const T* t, long ld_t, int t_site_cols, const int* seg_start, const LoraSeg* segs, int nseg,
    int nsite, T* y, long ld_y, long y_site_stride, int out_dim) {
  lora_expand_rows(t, ld_t, t_site_cols, seg_start, segs, nseg, nsite, y, ld_y, y_site_stride,
                   out_dim, [](T o, float v) { return D::st(D::ld(o) + v); });
}

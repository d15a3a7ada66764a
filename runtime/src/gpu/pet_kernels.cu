// Segmented kernels for parameter-efficient tenants (LoRA, BitFit, bottleneck adapters, heads)
// in mixed-tenant batches, compiled by NVRTC with `#define DTYPE <F32|F16|BF16>` prepended, like
// kernels.cu (no headers; 16-bit values are storage, all arithmetic is f32).
//
// A batch's rows are split into segments of consecutive rows, one tenant each:
// `seg_start[0..=nseg]` (row offsets, non-decreasing; an empty segment has start == end). Each
// kernel gets, per segment, a descriptor with that tenant's weight pointers for the site it runs
// at (a null pointer: nothing to do for that segment). Segments and descriptors are device
// data, so a CUDA graph captured once stays valid for every mix of tenants: the host rewrites
// the tables before replaying (and pads them to a fixed `nseg` with empty segments). Work is
// spread over the batch as a whole: each block computes the prefix of work items per segment in
// shared memory and walks the global item space with a grid-stride loop (a binary search finds
// an item's segment), so one big segment or many small ones keep every block busy (Punica's
// SGMV gathers weights by segment the same way).
//
// A launch may cover `nsite` sites that share an input and whose outputs lie `site_stride`
// elements apart (Q, K and V of one layer): descriptor tables are `[nseg][nsite]`.
//
// Arithmetic follows the CPU reference (`crate::pet::forward`, twin `crate::pet::twin`):
//   LoRA shrink  t = round(x·Aᵀ)                       (x, A, t in the model dtype)
//   LoRA expand  y += scale · (t·Bᵀ)                   (y f32, or y = round(y + …) in T)
//   bias         y += b_seg − base                     (the tenant's bias replacing the
//                                                       backbone's `base`, already in y)
//   adapter down d = round(act(round(x·Wdᵀ + bd)))     (x in T, or f32 rounded on load)
//   adapter up   out = (skip [+ res]) + (d·Wuᵀ + bu) · scaling   (f32)
//   linear       y = x·Wᵀ + b                          (heads: f32, or rounded to T)

// The storage types F32/F16/BF16, D and T come from dtype.cuh, prepended.

// The most segments one launch may describe.
#define PET_MAX_SEG 1024

// One tenant's LoRA pair at one linear: A [rank, in], B [out, rank] (row-major, model dtype).
// 24 bytes; `LoraSegDev` in pet.rs has the same layout.
struct LoraSeg {
  const T* a;
  const T* b;
  int rank;
  float scale;
};

// One tenant's bottleneck adapter at one sublayer end: down [width, h] + [width],
// up [h, width] + [h]; act as in kernels.cu's bias_act (1 GELU erf, 2 GELU tanh, 3 ReLU,
// 4 tanh) plus 5 SiLU. 48 bytes; `AdapterSegDev` in pet.rs has the same layout.
struct AdapterSeg {
  const T* down_w;
  const T* down_b;
  const T* up_w;
  const T* up_b;
  int width;
  int act;
  float scaling;
  int pad;
};

// One tenant's dense layer of a head: w [out, in], b [out] (null: no bias). 24 bytes;
// `LinearSegDev` in pet.rs has the same layout.
struct LinearSeg {
  const T* w;
  const T* b;
  int out;
  int pad;
};

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Elements of a 16-byte load.
#define PET_V (16 / (int)sizeof(T))

// Σ a[q]·b[q] over q < n in order, by one thread; 16-byte loads where both rows are 16-byte
// aligned (the same sums in the same order as the scalar loop).
__device__ __forceinline__ float row_dot(const T* a, const T* b, int n) {
  float acc = 0.f;
  int q = 0;
  if (((reinterpret_cast<size_t>(a) | reinterpret_cast<size_t>(b)) & 15) == 0) {
    for (; q + PET_V <= n; q += PET_V) {
      uint4 ua = *reinterpret_cast<const uint4*>(a + q);
      uint4 ub = *reinterpret_cast<const uint4*>(b + q);
      const T* pa = reinterpret_cast<const T*>(&ua);
      const T* pb = reinterpret_cast<const T*>(&ub);
#pragma unroll
      for (int i = 0; i < PET_V; ++i) acc += D::ld(pa[i]) * D::ld(pb[i]);
    }
  }
  for (; q < n; ++q) acc += D::ld(a[q]) * D::ld(b[q]);
  return acc;
}

// Σ a[k]·b[k] over k < n by the lanes of a warp (every lane gets the sum); 16-byte loads where
// both rows are aligned and n is a multiple of a vector.
__device__ __forceinline__ float warp_dot(const T* a, const T* b, int n, int lane) {
  float acc = 0.f;
  if (((reinterpret_cast<size_t>(a) | reinterpret_cast<size_t>(b)) & 15) == 0 && n % PET_V == 0) {
    for (int k = lane * PET_V; k < n; k += 32 * PET_V) {
      uint4 ua = *reinterpret_cast<const uint4*>(a + k);
      uint4 ub = *reinterpret_cast<const uint4*>(b + k);
      const T* pa = reinterpret_cast<const T*>(&ua);
      const T* pb = reinterpret_cast<const T*>(&ub);
#pragma unroll
      for (int i = 0; i < PET_V; ++i) acc += D::ld(pa[i]) * D::ld(pb[i]);
    }
  } else {
    for (int k = lane; k < n; k += 32) acc += D::ld(a[k]) * D::ld(b[k]);
  }
  return warp_sum(acc);
}

__device__ __forceinline__ float pet_act(float v, int act) {
  if (act == 1) return 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
  if (act == 2) return 0.5f * v * (1.f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
  if (act == 3) return fmaxf(v, 0.f);
  if (act == 4) return tanhf(v);
  if (act == 5) return v / (1.f + expf(-v));
  return v;
}

// Fills pre[0..=nseg] with the prefix sums of rows(s) * per_row(s) (per_row 0 skips a
// segment) and returns the total. All threads of the block must call it.
template <typename F>
__device__ long long seg_prefix(const int* seg_start, int nseg, F per_row, long long* pre) {
  if (threadIdx.x == 0) {
    long long acc = 0;
    pre[0] = 0;
    for (int s = 0; s < nseg; ++s) {
      int rows = seg_start[s + 1] - seg_start[s];
      acc += rows > 0 ? (long long)rows * per_row(s) : 0;
      pre[s + 1] = acc;
    }
  }
  __syncthreads();
  return pre[nseg];
}

// The segment of item `it` (pre[s] <= it < pre[s + 1]).
__device__ __forceinline__ int seg_of(const long long* pre, int nseg, long long it) {
  int lo = 0, hi = nseg - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) >> 1;
    if (pre[mid] <= it) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// Sum of the ranks of segment s's pairs (over its `nsite` sites).
__device__ __forceinline__ int ranks_of(const LoraSeg* segs, int s, int nsite) {
  int r = 0;
  for (int k = 0; k < nsite; ++k) r += segs[s * nsite + k].a ? segs[s * nsite + k].rank : 0;
  return r;
}

// Number of segment s's sites with a pair.
__device__ __forceinline__ int pairs_of(const LoraSeg* segs, int s, int nsite) {
  int p = 0;
  for (int k = 0; k < nsite; ++k) p += segs[s * nsite + k].b != 0;
  return p;
}

// t[row][k * t_site_cols + j] = round(x[row]·A_k[j]) for the rows of segments with a pair at
// site k; one warp per (row, site, j), lanes split the input dimension. 1-D grid, blocks of a
// multiple of 32 threads.
extern "C" __global__ void pet_lora_shrink(const T* x, long ld_x, const int* seg_start,
                                           const LoraSeg* segs, int nseg, int nsite, T* t,
                                           long ld_t, int t_site_cols, int in_dim) {
  __shared__ long long pre[PET_MAX_SEG + 1];
  long long total = seg_prefix(seg_start, nseg, [&](int s) { return ranks_of(segs, s, nsite); },
                               pre);
  int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  for (long long it = (long long)blockIdx.x * nw + (threadIdx.x >> 5); it < total;
       it += (long long)gridDim.x * nw) {
    int s = seg_of(pre, nseg, it);
    int per_row = ranks_of(segs, s, nsite);
    long long k0 = it - pre[s];
    long row = seg_start[s] + (long)(k0 / per_row);
    int j = (int)(k0 % per_row), k = 0;
    for (; k < nsite; ++k) {
      const LoraSeg& g = segs[s * nsite + k];
      int rk = g.a ? g.rank : 0;
      if (j < rk) break;
      j -= rk;
    }
    LoraSeg g = segs[s * nsite + k];
    float acc = warp_dot(x + row * ld_x, g.a + (long)j * in_dim, in_dim, lane);
    if (lane == 0) t[row * ld_t + (long)k * t_site_cols + j] = D::st(acc);
  }
}

// y_k[row][c] (+)= scale · t_k[row]·B_k[c], y_k = y + k * y_site_stride; one warp per
// (row, site with a pair), lanes over the output columns.
template <typename Out, typename Store>
__device__ void lora_expand(const T* t, long ld_t, int t_site_cols, const int* seg_start,
                            const LoraSeg* segs, int nseg, int nsite, Out* y, long ld_y,
                            long y_site_stride, int out_dim, Store store) {
  __shared__ long long pre[PET_MAX_SEG + 1];
  long long total =
      seg_prefix(seg_start, nseg, [&](int s) { return pairs_of(segs, s, nsite); }, pre);
  int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  for (long long it = (long long)blockIdx.x * nw + (threadIdx.x >> 5); it < total;
       it += (long long)gridDim.x * nw) {
    int s = seg_of(pre, nseg, it);
    int per_row = pairs_of(segs, s, nsite);
    long long k0 = it - pre[s];
    long row = seg_start[s] + (long)(k0 / per_row);
    int nth = (int)(k0 % per_row), k = 0;
    for (; k < nsite; ++k) {
      if (segs[s * nsite + k].b == 0) continue;
      if (nth == 0) break;
      --nth;
    }
    LoraSeg g = segs[s * nsite + k];
    const T* tr = t + row * ld_t + (long)k * t_site_cols;
    Out* yr = y + k * y_site_stride + row * ld_y;
    for (int c = lane; c < out_dim; c += 32) {
      float acc = row_dot(tr, g.b + (long)c * g.rank, g.rank);
      store(yr + c, acc * g.scale);
    }
  }
}

// LoRA expand onto an f32 output (the attention-output and FFN-down GEMMs' f32 results).
extern "C" __global__ void pet_lora_expand_f32(const T* t, long ld_t, int t_site_cols,
                                               const int* seg_start, const LoraSeg* segs,
                                               int nseg, int nsite, float* y, long ld_y,
                                               long y_site_stride, int out_dim) {
  lora_expand(t, ld_t, t_site_cols, seg_start, segs, nseg, nsite, y, ld_y, y_site_stride,
              out_dim, [](float* p, float v) { *p += v; });
}

// LoRA expand onto a model-dtype output (Q/K/V, FFN up, pooler): y = round(y + delta).
extern "C" __global__ void pet_lora_expand_t(const T* t, long ld_t, int t_site_cols,
                                             const int* seg_start, const LoraSeg* segs,
                                             int nseg, int nsite, T* y, long ld_y,
                                             long y_site_stride, int out_dim) {
  lora_expand(t, ld_t, t_site_cols, seg_start, segs, nseg, nsite, y, ld_y, y_site_stride,
              out_dim, [](T* p, float v) { *p = D::st(D::ld(*p) + v); });
}

// Number of segment s's sites with a bias.
__device__ __forceinline__ int biases_of(const T* const* bias, int s, int nsite) {
  int p = 0;
  for (int k = 0; k < nsite; ++k) p += bias[s * nsite + k] != 0;
  return p;
}

// apply(row, k, c, b_seg[k][c] − base_k[c]) for the rows of segments with a bias at site k
// (BitFit; `base_k = base + k * base_site_stride` is the backbone's bias already in the output,
// null for none). One warp per (row, site with a bias), lanes over the columns.
template <typename Apply>
__device__ void bias_seg(const int* seg_start, const T* const* bias, const T* base,
                         long base_site_stride, int nseg, int nsite, int n, Apply apply) {
  __shared__ long long pre[PET_MAX_SEG + 1];
  long long total =
      seg_prefix(seg_start, nseg, [&](int s) { return biases_of(bias, s, nsite); }, pre);
  int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  for (long long it = (long long)blockIdx.x * nw + (threadIdx.x >> 5); it < total;
       it += (long long)gridDim.x * nw) {
    int s = seg_of(pre, nseg, it);
    int per_row = biases_of(bias, s, nsite);
    long long k0 = it - pre[s];
    long row = seg_start[s] + (long)(k0 / per_row);
    int nth = (int)(k0 % per_row), k = 0;
    for (; k < nsite; ++k) {
      if (bias[s * nsite + k] == 0) continue;
      if (nth == 0) break;
      --nth;
    }
    const T* b = bias[s * nsite + k];
    const T* z = base ? base + k * base_site_stride : 0;
    for (int c = lane; c < n; c += 32) {
      float v = D::ld(b[c]);
      if (z) v -= D::ld(z[c]);
      apply(row, k, c, v);
    }
  }
}

// Bias per segment onto a model-dtype output: y = round(y + b − base).
extern "C" __global__ void pet_bias_seg_t(T* y, long ld_y, long y_site_stride,
                                          const int* seg_start, const T* const* bias,
                                          const T* base, long base_site_stride, int nseg,
                                          int nsite, int n) {
  bias_seg(seg_start, bias, base, base_site_stride, nseg, nsite, n,
           [&](long r, int k, int c, float b) {
             T* p = y + k * y_site_stride + r * ld_y + c;
             *p = D::st(D::ld(*p) + b);
           });
}

// Bias per segment onto an f32 output: y += b − base.
extern "C" __global__ void pet_bias_seg_f32(float* y, long ld_y, long y_site_stride,
                                            const int* seg_start, const T* const* bias,
                                            const T* base, long base_site_stride, int nseg,
                                            int nsite, int n) {
  bias_seg(seg_start, bias, base, base_site_stride, nseg, nsite, n,
           [&](long r, int k, int c, float b) { y[k * y_site_stride + r * ld_y + c] += b; });
}

// Bias per segment onto a layer norm's f32 output and its model-dtype copy: y32 += b − base,
// yT = round(y32) (a BitFit layer-norm bias replacing the backbone's β).
extern "C" __global__ void pet_bias_seg_dual(float* y32, T* yt, long ld, const int* seg_start,
                                             const T* const* bias, const T* base, int nseg,
                                             int n) {
  bias_seg(seg_start, bias, base, 0, nseg, 1, n, [&](long r, int, int c, float b) {
    float v = y32[r * ld + c] + b;
    y32[r * ld + c] = v;
    yt[r * ld + c] = D::st(v);
  });
}

// d[row][j] = round(act(round(x[row]·Wd[j] + bd[j]))); one warp per (row, j). `dot(x_row,
// w_row, lane)` is the warp's dot product over h (every lane gets it).
template <typename In, typename Dot>
__device__ void adapter_down(const In* x, long ld_x, const int* seg_start, const AdapterSeg* segs,
                             int nseg, T* d, long ld_d, int h, Dot dot) {
  __shared__ long long pre[PET_MAX_SEG + 1];
  long long total = seg_prefix(seg_start, nseg,
                               [&](int s) { return segs[s].down_w ? segs[s].width : 0; }, pre);
  int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  for (long long it = (long long)blockIdx.x * nw + (threadIdx.x >> 5); it < total;
       it += (long long)gridDim.x * nw) {
    int s = seg_of(pre, nseg, it);
    AdapterSeg g = segs[s];
    long long k0 = it - pre[s];
    long row = seg_start[s] + (long)(k0 / g.width);
    int j = (int)(k0 % g.width);
    float acc = dot(x + row * ld_x, g.down_w + (long)j * h, lane);
    if (lane == 0) {
      float v = D::ld(D::st(acc + D::ld(g.down_b[j])));
      d[row * ld_d + j] = D::st(pet_act(v, g.act));
    }
  }
}

// Adapter down on a model-dtype input (Pfeiffer: the layer norm's output).
extern "C" __global__ void pet_adapter_down(const T* x, long ld_x, const int* seg_start,
                                            const AdapterSeg* segs, int nseg, T* d, long ld_d,
                                            int h) {
  adapter_down(x, ld_x, seg_start, segs, nseg, d, ld_d, h,
               [&](const T* xr, const T* wr, int lane) { return warp_dot(xr, wr, h, lane); });
}

// Adapter down on an f32 input rounded to the model dtype as it is read (Houlsby: the
// sublayer's f32 output h, whose rounding is the adapter's input).
extern "C" __global__ void pet_adapter_down_f32(const float* x, long ld_x, const int* seg_start,
                                                const AdapterSeg* segs, int nseg, T* d,
                                                long ld_d, int h) {
  adapter_down(x, ld_x, seg_start, segs, nseg, d, ld_d, h,
               [&](const float* xr, const T* wr, int lane) {
                 float acc = 0.f;
                 for (int k = lane; k < h; k += 32) acc += D::ld(D::st(xr[k])) * D::ld(wr[k]);
                 return warp_sum(acc);
               });
}

// out[row][c] = (skip[row][c] + res[row][c]) + (d[row]·Wu[c] + bu[c]) · scaling (f32; a null
// `res` adds nothing); one warp per row, lanes over the columns. `out` may be `skip` (in place
// on the sublayer's f32 output).
extern "C" __global__ void pet_adapter_up(const T* d, long ld_d, const int* seg_start,
                                          const AdapterSeg* segs, int nseg, const float* skip,
                                          const float* res, float* out, long ld_h, int h) {
  __shared__ long long pre[PET_MAX_SEG + 1];
  long long total = seg_prefix(seg_start, nseg, [&](int s) { return segs[s].up_w ? 1 : 0; }, pre);
  int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  for (long long it = (long long)blockIdx.x * nw + (threadIdx.x >> 5); it < total;
       it += (long long)gridDim.x * nw) {
    int s = seg_of(pre, nseg, it);
    AdapterSeg g = segs[s];
    long row = seg_start[s] + (long)(it - pre[s]);
    const T* dr = d + row * ld_d;
    for (int c = lane; c < h; c += 32) {
      float acc = row_dot(dr, g.up_w + (long)c * g.width, g.width);
      float v = (acc + D::ld(g.up_b[c])) * g.scaling;
      long i = row * ld_h + c;
      float base = res ? skip[i] + res[i] : skip[i];
      out[i] = base + v;
    }
  }
}

// y[row][c] = x[row]·W[c] + b[c] per segment (each segment's own `out` columns); one warp per
// (row, c), lanes split the input dimension.
template <typename Out, typename Store>
__device__ void seg_linear(const T* x, long ld_x, const int* seg_start, const LinearSeg* segs,
                           int nseg, Out* y, long ld_y, int in_dim, Store store) {
  __shared__ long long pre[PET_MAX_SEG + 1];
  long long total =
      seg_prefix(seg_start, nseg, [&](int s) { return segs[s].w ? segs[s].out : 0; }, pre);
  int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  for (long long it = (long long)blockIdx.x * nw + (threadIdx.x >> 5); it < total;
       it += (long long)gridDim.x * nw) {
    int s = seg_of(pre, nseg, it);
    LinearSeg g = segs[s];
    long long k0 = it - pre[s];
    long row = seg_start[s] + (long)(k0 / g.out);
    int c = (int)(k0 % g.out);
    float acc = warp_dot(x + row * ld_x, g.w + (long)c * in_dim, in_dim, lane);
    if (lane == 0) store(y + row * ld_y + c, acc + (g.b ? D::ld(g.b[c]) : 0.f));
  }
}

// A head's dense layer per segment with an f32 output (classifiers: logits).
extern "C" __global__ void pet_linear_f32(const T* x, long ld_x, const int* seg_start,
                                          const LinearSeg* segs, int nseg, float* y, long ld_y,
                                          int in_dim) {
  seg_linear(x, ld_x, seg_start, segs, nseg, y, ld_y, in_dim,
             [](float* p, float v) { *p = v; });
}

// A head's dense layer per segment rounded to the model dtype (a tenant's own pooler, before
// its tanh).
extern "C" __global__ void pet_linear_t(const T* x, long ld_x, const int* seg_start,
                                        const LinearSeg* segs, int nseg, T* y, long ld_y,
                                        int in_dim) {
  seg_linear(x, ld_x, seg_start, segs, nseg, y, ld_y, in_dim,
             [](T* p, float v) { *p = D::st(v); });
}

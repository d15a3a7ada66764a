// Row-tiled segmented LoRA kernels (kernel option `pet_tiled`), appended to pet_kernels.cu's
// source (its types, DTYPE, `warp_sum`, `seg_of`, `ranks_of`, `pairs_of`) by `gpu/pet.rs`.
//
// The warp kernels above re-read a tenant's A and B from L2 for every row of its segment. Here
// a work item is a tile of up to PET_TILE rows of one segment (Punica's SGMV): the shrink
// stages the tenant's A rows (over its sites) in shared memory once per tile, each warp dots
// its rows against them; the expand stages the tile's t rows, each thread reads its output
// columns' B rows once and writes them for every row of the tile. The segment prefix is a
// block-wide scan (every thread loads a few segments), not thread 0 walking them in turn.
//
// Each output is computed exactly as the warp kernels compute it — the same products summed
// in the same order, the same rounding — whatever rows share its tile, so a tenant's rows are
// bit-equal alone or in a mixed batch, and bit-equal to the warp kernels' (tests/pet_gpu.rs):
//   shrink  per (row, j): lane l sums x[q]·A[j][q] over its q as `warp_dot` does (16-byte
//           slices l·V + 32·V·m where x's row and A's row are 16-byte aligned and in % V == 0,
//           else q = l + 32·m), then the same `warp_sum` butterfly; t = round(sum).
//   expand  per (row, c): Σ_q t[q]·B[c][q] in q order (as `row_dot`), times scale, stored as
//           the warp kernel stores.
// Segments and descriptors stay device data and the grid stays fixed: the same graph serves
// every mix of tenants.

// Rows of a work item.
#define PET_TILE 16
// Shared memory for a shrink item's A rows; wider inputs read A from global memory instead.
#define PET_A_BYTES 32768
// The most A rows (over sites and rank) one shrink item stages.
#define PET_CHUNK_MAX 64
// A rows a warp dots one x row against at once.
#define PET_JG 8
// Output columns per thread of an expand item (an item spans blockDim.x × PET_EXP_CPT).
#define PET_EXP_CPT 3
// Rank entries of the tile's t rows staged at once by the expand.
#define PET_QC 32

// Fills pre[0..=nseg] with the prefix sums of count(s) (a segment's work items) and returns the
// total: each thread counts a run of consecutive segments, then a warp scan and a scan of the
// warps' totals. blockDim.x must be a multiple of 32 (≤ 1024); all threads of the block call it.
template <typename F>
__device__ long long seg_scan(int nseg, F count, long long* pre) {
  __shared__ long long warp_tot[32];
  int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, nw = blockDim.x >> 5;
  int per = (nseg + (int)blockDim.x - 1) / (int)blockDim.x;
  int s0 = min(tid * per, nseg), s1 = min(s0 + per, nseg);
  long long local = 0;
  for (int s = s0; s < s1; ++s) {
    long long c = count(s);
    pre[s + 1] = c;
    local += c;
  }
  long long v = local;
  for (int o = 1; o < 32; o <<= 1) {
    long long u = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += u;
  }
  if (lane == 31) warp_tot[w] = v;
  __syncthreads();
  if (w == 0) {
    long long a = lane < nw ? warp_tot[lane] : 0;
    for (int o = 1; o < 32; o <<= 1) {
      long long u = __shfl_up_sync(0xffffffffu, a, o);
      if (lane >= o) a += u;
    }
    warp_tot[lane] = a;
  }
  __syncthreads();
  long long acc = v - local + (w > 0 ? warp_tot[w - 1] : 0);
  if (tid == 0) pre[0] = 0;
  for (int s = s0; s < s1; ++s) {
    acc += pre[s + 1];
    pre[s + 1] = acc;
  }
  __syncthreads();
  return pre[nseg];
}

// This lane's part of `warp_dot(a, b, n, lane)` before the butterfly: 16-byte slices where
// `vec`, strided scalars otherwise (the same products in the same order).
__device__ __forceinline__ float lane_dot(const T* a, const T* b, int n, int lane, bool vec) {
  float acc = 0.f;
  if (vec) {
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
  return acc;
}

// `pet_lora_shrink` by tiles: an item is (segment, tile of PET_TILE rows, chunk of the
// segment's A rows over its sites); the block stages the chunk's A rows in shared memory (when
// one fits) and its warps take the tile's rows, PET_JG A rows at a time. Same arguments.
extern "C" __global__ void pet_lora_shrink_tiled(const T* x, long ld_x, const int* seg_start,
                                                 const LoraSeg* segs, int nseg, int nsite, T* t,
                                                 long ld_t, int t_site_cols, int in_dim) {
  __shared__ long long pre[PET_MAX_SEG + 1];
  __shared__ uint4 a_smem[PET_A_BYTES / 16];
  __shared__ const T* a_src[PET_CHUNK_MAX];  // each staged row's A row in global memory
  __shared__ int a_col[PET_CHUNK_MAX];       // its column of t
  __shared__ int a_vec[PET_CHUNK_MAX];       // whether it is 16-byte aligned (and in % V == 0)
  T* as = reinterpret_cast<T*>(a_smem);
  int fit = (PET_A_BYTES / (int)sizeof(T)) / in_dim;
  bool staged = fit > 0;
  int chunk = min(max(fit, 1), PET_CHUNK_MAX);
  long long total = seg_scan(
      nseg,
      [&](int s) -> long long {
        int rows = seg_start[s + 1] - seg_start[s], r = ranks_of(segs, s, nsite);
        if (rows <= 0 || r == 0) return 0;
        return (long long)((rows + PET_TILE - 1) / PET_TILE) * ((r + chunk - 1) / chunk);
      },
      pre);
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  bool vdim = in_dim % PET_V == 0;
  for (long long it = blockIdx.x; it < total; it += gridDim.x) {
    int s = seg_of(pre, nseg, it);
    int r = ranks_of(segs, s, nsite);
    int nchunk = (r + chunk - 1) / chunk;
    long long k0 = it - pre[s];
    int tile = (int)(k0 / nchunk), f0 = (int)(k0 % nchunk) * chunk;
    int nf = min(chunk, r - f0);
    int row0 = seg_start[s] + tile * PET_TILE;
    int nrows = min(PET_TILE, seg_start[s + 1] - row0);
    __syncthreads();  // the previous item is done with the tables and the staged rows
    if ((int)threadIdx.x < nf) {
      int j = f0 + threadIdx.x, k = 0;
      for (; k < nsite; ++k) {
        const LoraSeg& g = segs[s * nsite + k];
        int rk = g.a ? g.rank : 0;
        if (j < rk) break;
        j -= rk;
      }
      const T* src = segs[s * nsite + k].a + (long)j * in_dim;
      a_src[threadIdx.x] = src;
      a_col[threadIdx.x] = k * t_site_cols + j;
      a_vec[threadIdx.x] = vdim && (reinterpret_cast<size_t>(src) & 15) == 0;
    }
    __syncthreads();
    if (staged) {
      for (int f = w; f < nf; f += nw) {
        const T* src = a_src[f];
        T* dst = as + (long)f * in_dim;
        if (a_vec[f]) {
          for (int q = lane * PET_V; q < in_dim; q += 32 * PET_V)
            *reinterpret_cast<uint4*>(dst + q) = *reinterpret_cast<const uint4*>(src + q);
        } else {
          for (int q = lane; q < in_dim; q += 32) dst[q] = src[q];
        }
      }
      __syncthreads();
    }
    for (int rr = w; rr < nrows; rr += nw) {
      long row = row0 + rr;
      const T* xr = x + row * ld_x;
      bool xvec = vdim && (reinterpret_cast<size_t>(xr) & 15) == 0;
      for (int g0 = 0; g0 < nf; g0 += PET_JG) {
        int ng = min(PET_JG, nf - g0);
        bool all_vec = xvec;
        for (int g = 0; g < ng; ++g) all_vec = all_vec && a_vec[g0 + g];
        float acc[PET_JG];
        if (all_vec) {
          // x's slice read once for the group's A rows.
#pragma unroll
          for (int g = 0; g < PET_JG; ++g) acc[g] = 0.f;
          for (int q = lane * PET_V; q < in_dim; q += 32 * PET_V) {
            uint4 ux = *reinterpret_cast<const uint4*>(xr + q);
            const T* px = reinterpret_cast<const T*>(&ux);
#pragma unroll
            for (int g = 0; g < PET_JG; ++g) {
              if (g < ng) {
                const T* arow = staged ? as + (long)(g0 + g) * in_dim : a_src[g0 + g];
                uint4 ua = *reinterpret_cast<const uint4*>(arow + q);
                const T* pa = reinterpret_cast<const T*>(&ua);
#pragma unroll
                for (int i = 0; i < PET_V; ++i) acc[g] += D::ld(px[i]) * D::ld(pa[i]);
              }
            }
          }
        } else {
#pragma unroll
          for (int g = 0; g < PET_JG; ++g) {
            acc[g] = 0.f;
            if (g < ng) {
              const T* arow = staged ? as + (long)(g0 + g) * in_dim : a_src[g0 + g];
              acc[g] = lane_dot(xr, arow, in_dim, lane, xvec && a_vec[g0 + g]);
            }
          }
        }
#pragma unroll
        for (int g = 0; g < PET_JG; ++g) {
          if (g < ng) {
            float v = warp_sum(acc[g]);
            if (lane == 0) t[row * ld_t + a_col[g0 + g]] = D::st(v);
          }
        }
      }
    }
  }
}

// `lora_expand` by tiles: an item is (segment, tile of PET_TILE rows, site with a pair, span of
// blockDim.x × PET_EXP_CPT output columns); the block stages the tile's t rows PET_QC rank
// entries at a time, each thread accumulates its columns for every row of the tile.
// `store(p, old, v)` writes output `p`, whose value was `old`, plus `v`.
template <typename Out, typename Store>
__device__ void lora_expand_tiled(const T* t, long ld_t, int t_site_cols, const int* seg_start,
                                  const LoraSeg* segs, int nseg, int nsite, Out* y, long ld_y,
                                  long y_site_stride, int out_dim, Store store) {
  __shared__ long long pre[PET_MAX_SEG + 1];
  __shared__ float ts[PET_TILE][PET_QC];
  int span = blockDim.x * PET_EXP_CPT;
  int nspan = (out_dim + span - 1) / span;
  long long total = seg_scan(
      nseg,
      [&](int s) -> long long {
        int rows = seg_start[s + 1] - seg_start[s], p = pairs_of(segs, s, nsite);
        if (rows <= 0 || p == 0) return 0;
        return (long long)((rows + PET_TILE - 1) / PET_TILE) * p * nspan;
      },
      pre);
  for (long long it = blockIdx.x; it < total; it += gridDim.x) {
    int s = seg_of(pre, nseg, it);
    int p = pairs_of(segs, s, nsite);
    long long k0 = it - pre[s];
    int c0 = (int)(k0 % nspan) * span;
    long long k1 = k0 / nspan;
    int nth = (int)(k1 % p), tile = (int)(k1 / p), k = 0;
    for (; k < nsite; ++k) {
      if (segs[s * nsite + k].b == 0) continue;
      if (nth == 0) break;
      --nth;
    }
    LoraSeg g = segs[s * nsite + k];
    int row0 = seg_start[s] + tile * PET_TILE;
    int nrows = min(PET_TILE, seg_start[s + 1] - row0);
    // The outputs this thread adds to, read up front: a read-add-write per output in turn would
    // make every load wait for the store before it (the compiler cannot tell the rows' outputs
    // apart), a chain of PET_EXP_CPT × PET_TILE round trips to memory per item. Each output
    // belongs to exactly one item, so reading it early reads the same value.
    Out old[PET_EXP_CPT][PET_TILE];
#pragma unroll
    for (int i = 0; i < PET_EXP_CPT; ++i) {
      int c = c0 + i * (int)blockDim.x + (int)threadIdx.x;
      const Out* yc = y + k * y_site_stride + (long)row0 * ld_y + c;
#pragma unroll
      for (int rr = 0; rr < PET_TILE; ++rr)
        if (c < out_dim && rr < nrows) old[i][rr] = yc[rr * ld_y];
    }
    float acc[PET_EXP_CPT][PET_TILE];
#pragma unroll
    for (int i = 0; i < PET_EXP_CPT; ++i)
#pragma unroll
      for (int rr = 0; rr < PET_TILE; ++rr) acc[i][rr] = 0.f;
    for (int q0 = 0; q0 < g.rank; q0 += PET_QC) {
      int nq = min(PET_QC, g.rank - q0);
      __syncthreads();  // the previous stage (or item) is done with ts
      for (int e = threadIdx.x; e < PET_TILE * PET_QC; e += blockDim.x) {
        int rr = e / PET_QC, q = e % PET_QC;
        ts[rr][q] = rr < nrows && q < nq
                        ? D::ld(t[(long)(row0 + rr) * ld_t + (long)k * t_site_cols + q0 + q])
                        : 0.f;
      }
      __syncthreads();
#pragma unroll
      for (int i = 0; i < PET_EXP_CPT; ++i) {
        int c = c0 + i * (int)blockDim.x + (int)threadIdx.x;
        if (c >= out_dim) continue;
        const T* br = g.b + (long)c * g.rank + q0;
        if ((reinterpret_cast<size_t>(br) & 15) == 0 && nq % PET_V == 0) {
          for (int q = 0; q < nq; q += PET_V) {
            uint4 ub = *reinterpret_cast<const uint4*>(br + q);
            const T* pb = reinterpret_cast<const T*>(&ub);
#pragma unroll
            for (int v = 0; v < PET_V; ++v) {
              float b = D::ld(pb[v]);
#pragma unroll
              for (int rr = 0; rr < PET_TILE; ++rr) acc[i][rr] += ts[rr][q + v] * b;
            }
          }
        } else {
          for (int q = 0; q < nq; ++q) {
            float b = D::ld(br[q]);
#pragma unroll
            for (int rr = 0; rr < PET_TILE; ++rr) acc[i][rr] += ts[rr][q] * b;
          }
        }
      }
    }
#pragma unroll
    for (int i = 0; i < PET_EXP_CPT; ++i) {
      int c = c0 + i * (int)blockDim.x + (int)threadIdx.x;
      if (c >= out_dim) continue;
      Out* yc = y + k * y_site_stride + (long)row0 * ld_y + c;
#pragma unroll
      for (int rr = 0; rr < PET_TILE; ++rr)
        if (rr < nrows) store(yc + rr * ld_y, old[i][rr], acc[i][rr] * g.scale);
    }
  }
}

// `pet_lora_expand_f32` by tiles (same arguments).
extern "C" __global__ void pet_lora_expand_tiled_f32(const T* t, long ld_t, int t_site_cols,
                                                     const int* seg_start, const LoraSeg* segs,
                                                     int nseg, int nsite, float* y, long ld_y,
                                                     long y_site_stride, int out_dim) {
  lora_expand_tiled(t, ld_t, t_site_cols, seg_start, segs, nseg, nsite, y, ld_y, y_site_stride,
                    out_dim, [](float* p, float o, float v) { *p = o + v; });
}

// `pet_lora_expand_t` by tiles (same arguments).
extern "C" __global__ void pet_lora_expand_tiled_t(const T* t, long ld_t, int t_site_cols,
                                                   const int* seg_start, const LoraSeg* segs,
                                                   int nseg, int nsite, T* y, long ld_y,
                                                   long y_site_stride, int out_dim) {
  lora_expand_tiled(t, ld_t, t_site_cols, seg_start, segs, nseg, nsite, y, ld_y, y_site_stride,
                    out_dim, [](T* p, T o, float v) { *p = D::st(D::ld(o) + v); });
}

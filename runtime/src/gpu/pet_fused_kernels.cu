// Fused segmented LoRA kernels (kernel option `pet_fused`), appended after
// pet_tiled_kernels.cu (its `seg_scan` and `lane_dot`, pet_kernels.cu's types and helpers).
//
// The tiled kernels are two launches per site group with the shrink output `t` going through
// global memory between them, and their expand keeps 48 outputs and 48 sums per thread (255
// registers, spilling: one block per multiprocessor). Here one launch does both: a work item
// is a tile of up to PET_FT rows of one segment; the block computes the tile's `t` over every
// site into shared memory (the tenant's A rows staged there as the tiled shrink stages them),
// then adds every site's expand onto its outputs, each thread one output column at a time
// with its PET_FT old values and B row loaded before any store (one trip to memory per column,
// not one per load). `t` never leaves the multiprocessor. (Tried on the H200, part r of
// device-round2.sh: three columns per thread at once, all loaded before any store, made the
// Q/K/V step slower — 0.645 ms against this kernel's 0.554 for 32 tenants × 128 tokens; the
// unrolled loads spill at 128 registers.)
//
// Each output is computed exactly as the warp and tiled kernels compute it (tests/
// pet_tiled_gpu.rs checks it bit for bit on a GPU):
//   shrink  per (row, j): lane l's part as `lane_dot` / the tiled shrink's vector path, the same
//           `warp_sum`, t = round(sum) to the model dtype (kept here as that value in f32);
//   expand  per (row, c): Σ_q t[q]·B[c][q] in q order from 0, times scale, stored as the
//           tiled expand stores (`y + v`, rounded to the model dtype for a model-dtype y).
// A pair has both matrices: a site whose A or B is null does nothing for its segment.
// The host launches these only where every site's padded rank fits the staged `t`
// (`sites × pad4(t_cols) ≤ PET_FT_RMAX`), the tiled kernels otherwise.

// Rows of a work item (16 made the expand spill at two blocks per multiprocessor; 8 gives
// twice the items to spread over the multiprocessors).
#define PET_FT 8
// The most rank entries (each site's rank padded to 4) one item stages per row.
#define PET_FT_RMAX 96
// Shared memory for an item's A rows; wider inputs read A from global memory instead.
#define PET_FA_BYTES 24576
// The most A rows staged at once.
#define PET_FCHUNK 48
// A rows a warp dots one x row against at once (the tiled shrink's 8 would make this kernel
// spill: its expand keeps a tile's outputs in registers).
#define PET_FJG 4
// The most sites of a launch (`MAX_SITES` in pet.rs).
#define PET_FSITES 3

// 8 entries of a B row from `p` as f32: 16-byte loads where the row is aligned.
__device__ __forceinline__ void fused_load_b(const T* p, float* b) {
  if ((reinterpret_cast<size_t>(p) & 15) == 0) {
#pragma unroll
    for (int h = 0; h < 8; h += PET_V) {
      uint4 u = *reinterpret_cast<const uint4*>(p + h);
      const T* pu = reinterpret_cast<const T*>(&u);
#pragma unroll
      for (int i = 0; i < PET_V; ++i) b[h + i] = D::ld(pu[i]);
    }
  } else {
#pragma unroll
    for (int q = 0; q < 8; ++q) b[q] = D::ld(p[q]);
  }
}

// `pet_lora_fused_*`: `y_k (+)= scale · round(x·A_kᵀ)·B_kᵀ` per segment and site `k` (sites'
// outputs `y_site_stride` elements apart), tiles of PET_FT rows as work items.
// `store(p, old, v)` writes output `p`, whose value was `old`, plus `v`.
template <typename Out, typename Store>
__device__ void lora_fused(const T* x, long ld_x, const int* seg_start, const LoraSeg* segs,
                           int nseg, int nsite, int in_dim, Out* y, long ld_y,
                           long y_site_stride, int out_dim, Store store) {
  __shared__ long long pre[PET_MAX_SEG + 1];
  __shared__ uint4 a_smem[PET_FA_BYTES / 16];
  // The tile's t (+4: the expand reads 8 entries from any multiple of 8 below the padding).
  __shared__ __align__(16) float ts[PET_FT][PET_FT_RMAX + 4];
  __shared__ const T* a_src[PET_FCHUNK];  // each staged row's A row in global memory
  __shared__ int a_col[PET_FCHUNK];       // its column of ts
  __shared__ int a_vec[PET_FCHUNK];       // whether it is 16-byte aligned (and in % V == 0)
  __shared__ LoraSeg site[PET_FSITES];    // the item's pairs (rank 0: none at that site)
  __shared__ int site_off[PET_FSITES];    // their first column of ts
  __shared__ int act[PET_FSITES];         // the sites with a pair, in order
  __shared__ int nact;
  T* as = reinterpret_cast<T*>(a_smem);
  int fit = (PET_FA_BYTES / (int)sizeof(T)) / in_dim;
  bool staged = fit > 0;
  int chunk = min(max(fit, 1), PET_FCHUNK);
  long long total = seg_scan(
      nseg,
      [&](int s) -> long long {
        int rows = seg_start[s + 1] - seg_start[s];
        if (rows <= 0 || ranks_of(segs, s, nsite) == 0) return 0;
        return (long long)((rows + PET_FT - 1) / PET_FT);
      },
      pre);
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  int bd = (int)blockDim.x;
  bool vdim = in_dim % PET_V == 0;
  for (long long it = blockIdx.x; it < total; it += gridDim.x) {
    int s = seg_of(pre, nseg, it);
    int row0 = seg_start[s] + (int)(it - pre[s]) * PET_FT;
    int nrows = min(PET_FT, seg_start[s + 1] - row0);
    __syncthreads();  // the previous item is done with the site tables, A and ts
    if (threadIdx.x == 0) {
      int off = 0, na = 0;
      for (int k = 0; k < nsite; ++k) {
        LoraSeg g = segs[s * nsite + k];
        if (g.a == 0 || g.b == 0) g.rank = 0;
        site[k] = g;
        site_off[k] = off;
        off += (g.rank + 3) & ~3;
        if (g.rank > 0) act[na++] = k;
      }
      if (off > PET_FT_RMAX) __trap();  // the host's check (`lora_fits_fused`) was bypassed
      nact = na;
    }
    __syncthreads();
    int r = 0;
    for (int k = 0; k < nsite; ++k) r += site[k].rank;
    // Shrink: the tile's rows against `chunk` A rows at a time.
    for (int f0 = 0; f0 < r; f0 += chunk) {
      int nf = min(chunk, r - f0);
      if ((int)threadIdx.x < nf) {
        int j = f0 + threadIdx.x, k = 0;
        for (; k < nsite; ++k) {
          if (j < site[k].rank) break;
          j -= site[k].rank;
        }
        const T* src = site[k].a + (long)j * in_dim;
        a_src[threadIdx.x] = src;
        a_col[threadIdx.x] = site_off[k] + j;
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
        const T* xr = x + (long)(row0 + rr) * ld_x;
        bool xvec = vdim && (reinterpret_cast<size_t>(xr) & 15) == 0;
        for (int g0 = 0; g0 < nf; g0 += PET_FJG) {
          int ng = min(PET_FJG, nf - g0);
          bool all_vec = xvec;
          for (int g = 0; g < ng; ++g) all_vec = all_vec && a_vec[g0 + g];
          float acc[PET_FJG];
          if (all_vec) {
#pragma unroll
            for (int g = 0; g < PET_FJG; ++g) acc[g] = 0.f;
            for (int q = lane * PET_V; q < in_dim; q += 32 * PET_V) {
              uint4 ux = *reinterpret_cast<const uint4*>(xr + q);
              const T* px = reinterpret_cast<const T*>(&ux);
#pragma unroll
              for (int g = 0; g < PET_FJG; ++g) {
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
            for (int g = 0; g < PET_FJG; ++g) {
              acc[g] = 0.f;
              if (g < ng) {
                const T* arow = staged ? as + (long)(g0 + g) * in_dim : a_src[g0 + g];
                acc[g] = lane_dot(xr, arow, in_dim, lane, xvec && a_vec[g0 + g]);
              }
            }
          }
#pragma unroll
          for (int g = 0; g < PET_FJG; ++g) {
            if (g < ng) {
              float v = warp_sum(acc[g]);
              if (lane == 0) ts[rr][a_col[g0 + g]] = D::ld(D::st(v));
            }
          }
        }
      }
      __syncthreads();  // ts is whole (or the next chunk may restage A)
    }
    // Expand: outputs e = (i-th site with a pair, column c), one per thread at a time.
    int tot = nact * out_dim;
    for (int e = threadIdx.x; e < tot; e += bd) {
      int k = act[e / out_dim], c = e % out_dim;
      LoraSeg g = site[k];
      Out* yc = y + k * y_site_stride + (long)row0 * ld_y + c;
      // The outputs read up front (see the tiled expand: a read-add-write in turn would wait
      // for each store). Each output belongs to exactly one thread of one item.
      Out old[PET_FT];
#pragma unroll
      for (int rr = 0; rr < PET_FT; ++rr)
        if (rr < nrows) old[rr] = yc[rr * ld_y];
      float acc[PET_FT];
#pragma unroll
      for (int rr = 0; rr < PET_FT; ++rr) acc[rr] = 0.f;
      const T* br = g.b + (long)c * g.rank;
      for (int q0 = 0; q0 < g.rank; q0 += 8) {
        int n = min(8, g.rank - q0);
        const float* tq = &ts[0][site_off[k] + q0];
        if (n == 8) {
          float b[8];
          fused_load_b(br + q0, b);
          // A whole chunk: each row's 8 entries as two aligned 16-byte reads (site offsets are
          // multiples of 4, q0 of 8, the row stride of 4 floats).
#pragma unroll
          for (int rr = 0; rr < PET_FT; ++rr) {
            const float4* p = reinterpret_cast<const float4*>(tq + rr * (PET_FT_RMAX + 4));
            float4 u = p[0], v = p[1];
            acc[rr] += u.x * b[0];
            acc[rr] += u.y * b[1];
            acc[rr] += u.z * b[2];
            acc[rr] += u.w * b[3];
            acc[rr] += v.x * b[4];
            acc[rr] += v.y * b[5];
            acc[rr] += v.z * b[6];
            acc[rr] += v.w * b[7];
          }
        } else {
          // A partial chunk (ranks not a multiple of 8): entry by entry.
          for (int q = 0; q < n; ++q) {
            float bq = D::ld(br[q0 + q]);
#pragma unroll
            for (int rr = 0; rr < PET_FT; ++rr) acc[rr] += tq[rr * (PET_FT_RMAX + 4) + q] * bq;
          }
        }
      }
#pragma unroll
      for (int rr = 0; rr < PET_FT; ++rr)
        if (rr < nrows) store(yc + rr * ld_y, old[rr], acc[rr] * g.scale);
    }
  }
}

// Fused LoRA onto an f32 output (the attention-output and FFN-down GEMMs' f32 results).
extern "C" __global__ __launch_bounds__(256, 2) void pet_lora_fused_f32(
    const T* x, long ld_x, const int* seg_start, const LoraSeg* segs, int nseg, int nsite,
    int in_dim, float* y, long ld_y, long y_site_stride, int out_dim) {
  lora_fused(x, ld_x, seg_start, segs, nseg, nsite, in_dim, y, ld_y, y_site_stride, out_dim,
             [](float* p, float o, float v) { *p = o + v; });
}

// Fused LoRA onto a model-dtype output (Q/K/V, FFN up, pooler): y = round(y + delta).
extern "C" __global__ __launch_bounds__(256, 2) void pet_lora_fused_t(
    const T* x, long ld_x, const int* seg_start, const LoraSeg* segs, int nseg, int nsite,
    int in_dim, T* y, long ld_y, long y_site_stride, int out_dim) {
  lora_fused(x, ld_x, seg_start, segs, nseg, nsite, in_dim, y, ld_y, y_site_stride, out_dim,
             [](T* p, T o, float v) { *p = D::st(D::ld(o) + v); });
}

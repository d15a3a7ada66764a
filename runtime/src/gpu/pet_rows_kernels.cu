// Row-item LoRA kernels (kernel option `pet_rows`), appended after pet_fused_kernels.cu (its
// `fused_load_b` and PET_FT_RMAX, pet_kernels.cu's types and helpers).
//
// The fused kernels take a tile of rows of one segment as a work item and give each thread one
// output column at a time over the tile's rows: loads of 2 bytes a lane, strided by the row,
// six columns in turn per thread — a chain of trips to memory at two blocks per
// multiprocessor, 46 µs a layer on the H200 where the bytes take about 6 (BENCHMARKS.md).
// Here a work item is PET_RR consecutive rows of the batch, whatever their segments (each row
// looks its own segment up), and
//   shrink  warps take the rows (several warps a row where the block has more warps than the
//           item has rows, splitting its rank entries), the row's x read by the lanes as the
//           tiled shrink reads it, A rows from global memory (L1/L2: one tenant's A is a few
//           tens of KB), t into shared memory;
//   expand  a thread takes a vector of PET_RC consecutive output columns of one (row, site) —
//           one 16-byte read of y, one write — and two such vectors at once, both read before
//           either is written; B rows from global memory, t from shared memory.
// Each output is computed exactly as the warp, tiled and fused kernels compute it (tests/
// pet_tiled_gpu.rs checks it bit for bit on a GPU):
//   shrink  per (row, j): lane l's part as `lane_dot` (16-byte slices where in_dim % V == 0 and
//           both rows are 16-byte aligned, strided scalars otherwise), `warp_sum`, t = round;
//   expand  per (row, c): Σ_q t[q]·B[c][q] in q order from 0, times scale, stored as `y + v`
//           (rounded to the model dtype for a model-dtype y).
// The host launches these only where every site's padded rank fits (`fits_fused`), the tiled
// kernels otherwise.

// Rows of a work item.
#define PET_RR 8
// Output columns of an expand vector.
#define PET_RC 8
// Expand vectors a thread reads before writing any.
#define PET_RH 1
// The most (row, site) pairs of an item.
#define PET_RPAIRS (PET_RR * PET_FSITES)

// `combine(old, v)`: the stored value of an output whose value was `old`, plus `v`.
template <typename Out, typename Combine>
__device__ void lora_rows(const T* x, long ld_x, const int* seg_start, const LoraSeg* segs,
                          int nseg, int nsite, int in_dim, Out* y, long ld_y,
                          long y_site_stride, int out_dim, Combine combine) {
  __shared__ __align__(16) float ts[PET_RR][PET_FT_RMAX + 4];
  __shared__ LoraSeg site[PET_RR][PET_FSITES];  // each row's pairs (rank 0: none there)
  __shared__ int site_off[PET_RR][PET_FSITES];  // their first column of ts
  __shared__ int rank_sum[PET_RR];              // each row's rank entries over its sites
  __shared__ int pair_row[PET_RPAIRS];          // the item's (row, site) pairs with a delta
  __shared__ int pair_site[PET_RPAIRS];
  __shared__ int npair;
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  int wpr = max(nw / PET_RR, 1);  // warps a row
  int rows_total = seg_start[nseg];
  int ngroup = (out_dim + PET_RC - 1) / PET_RC;
  bool vdim = in_dim % PET_V == 0;
  for (int row0 = blockIdx.x * PET_RR; row0 < rows_total; row0 += gridDim.x * PET_RR) {
    int nrows = min(PET_RR, rows_total - row0);
    __syncthreads();  // the previous item is done with the tables and ts
    if ((int)threadIdx.x < nrows) {
      int rr = threadIdx.x, row = row0 + rr;
      // The row's segment: the last s < nseg with seg_start[s] <= row (a non-empty one).
      int lo = 0, hi = nseg - 1;
      while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (seg_start[mid] <= row) lo = mid; else hi = mid - 1;
      }
      int off = 0, rs = 0;
      for (int k = 0; k < nsite; ++k) {
        LoraSeg g = segs[lo * nsite + k];
        if (g.a == 0 || g.b == 0) g.rank = 0;
        site[rr][k] = g;
        site_off[rr][k] = off;
        off += (g.rank + 3) & ~3;
        rs += g.rank;
      }
      if (off > PET_FT_RMAX) __trap();  // the host's check (`fits_fused`) was bypassed
      rank_sum[rr] = rs;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int n = 0;
      for (int rr = 0; rr < nrows; ++rr)
        for (int k = 0; k < nsite; ++k)
          if (site[rr][k].rank > 0) {
            pair_row[n] = rr;
            pair_site[n] = k;
            ++n;
          }
      npair = n;
    }
    // Shrink: warp w takes row w % PET_RR (if the item has it) and every wpr-th rank entry.
    for (int rr = w % PET_RR; rr < nrows && w / PET_RR < wpr; rr += nw) {
      const T* xr = x + (long)(row0 + rr) * ld_x;
      bool xvec = vdim && (reinterpret_cast<size_t>(xr) & 15) == 0;
      int r = rank_sum[rr];
      for (int j0 = (w / PET_RR) * PET_FJG; j0 < r; j0 += wpr * PET_FJG) {
        int ng = min(PET_FJG, r - j0);
        const T* arow[PET_FJG];
        int col[PET_FJG];
        bool all_vec = xvec;
#pragma unroll
        for (int g = 0; g < PET_FJG; ++g) {
          arow[g] = 0;
          col[g] = 0;
          if (g < ng) {
            int j = j0 + g, k = 0;
            for (; k < nsite; ++k) {
              if (j < site[rr][k].rank) break;
              j -= site[rr][k].rank;
            }
            arow[g] = site[rr][k].a + (long)j * in_dim;
            col[g] = site_off[rr][k] + j;
            all_vec = all_vec && (reinterpret_cast<size_t>(arow[g]) & 15) == 0;
          }
        }
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
                uint4 ua = *reinterpret_cast<const uint4*>(arow[g] + q);
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
            if (g < ng)
              acc[g] = lane_dot(xr, arow[g], in_dim, lane,
                                xvec && (reinterpret_cast<size_t>(arow[g]) & 15) == 0);
          }
        }
#pragma unroll
        for (int g = 0; g < PET_FJG; ++g) {
          if (g < ng) {
            float v = warp_sum(acc[g]);
            if (lane == 0) ts[rr][col[g]] = D::ld(D::st(v));
          }
        }
      }
    }
    __syncthreads();  // ts and the pair list are whole
    // Expand: vector e = (pair e / ngroup, column group e % ngroup); two at a time.
    int tot = npair * ngroup;
    for (int e0 = threadIdx.x; e0 < tot; e0 += PET_RH * (int)blockDim.x) {
      // Each vector's old outputs as 16-byte words (one for 16-bit outputs, two for f32).
      uint4 old[PET_RH][PET_RC * sizeof(Out) / 16];
      Out* yp[PET_RH];
      int nc[PET_RH];
      bool vec[PET_RH];
      const LoraSeg* gp[PET_RH];
      const float* tr[PET_RH];
      int c0[PET_RH];
#pragma unroll
      for (int h = 0; h < PET_RH; ++h) {
        int e = e0 + h * (int)blockDim.x;
        nc[h] = 0;
        vec[h] = false;
        if (e < tot) {
          int p = e / ngroup, rr = pair_row[p], k = pair_site[p];
          c0[h] = (e % ngroup) * PET_RC;
          nc[h] = min(PET_RC, out_dim - c0[h]);
          gp[h] = &site[rr][k];
          tr[h] = &ts[rr][site_off[rr][k]];
          yp[h] = y + k * y_site_stride + (long)(row0 + rr) * ld_y + c0[h];
          vec[h] = nc[h] == PET_RC && (reinterpret_cast<size_t>(yp[h]) & 15) == 0;
          if (vec[h]) {
#pragma unroll
            for (int v = 0; v < PET_RC * (int)sizeof(Out) / 16; ++v)
              old[h][v] = reinterpret_cast<const uint4*>(yp[h])[v];
          } else {
            Out* o = reinterpret_cast<Out*>(old[h]);
#pragma unroll
            for (int i = 0; i < PET_RC; ++i)
              if (i < nc[h]) o[i] = yp[h][i];
          }
        }
      }
#pragma unroll
      for (int h = 0; h < PET_RH; ++h) {
        if (nc[h] == 0) continue;
        LoraSeg g = *gp[h];
        float acc[PET_RC];
#pragma unroll
        for (int i = 0; i < PET_RC; ++i) acc[i] = 0.f;
        for (int q0 = 0; q0 < g.rank; q0 += 8) {
          int n = min(8, g.rank - q0);
          if (n == 8) {
            // The row's 8 entries as two aligned 16-byte reads (site offsets are multiples of
            // 4, q0 of 8, the row stride of 4 floats).
            const float4* p = reinterpret_cast<const float4*>(tr[h] + q0);
            float4 u = p[0], v = p[1];
#pragma unroll
            for (int i = 0; i < PET_RC; ++i) {
              if (i < nc[h]) {
                float b[8];
                fused_load_b(g.b + (long)(c0[h] + i) * g.rank + q0, b);
                acc[i] += u.x * b[0];
                acc[i] += u.y * b[1];
                acc[i] += u.z * b[2];
                acc[i] += u.w * b[3];
                acc[i] += v.x * b[4];
                acc[i] += v.y * b[5];
                acc[i] += v.z * b[6];
                acc[i] += v.w * b[7];
              }
            }
          } else {
            // A partial chunk (ranks not a multiple of 8): entry by entry.
#pragma unroll
            for (int i = 0; i < PET_RC; ++i) {
              if (i < nc[h]) {
                const T* br = g.b + (long)(c0[h] + i) * g.rank + q0;
                for (int q = 0; q < n; ++q) acc[i] += tr[h][q0 + q] * D::ld(br[q]);
              }
            }
          }
        }
        uint4 raw[PET_RC * sizeof(Out) / 16];
        Out* out = reinterpret_cast<Out*>(raw);
        const Out* o = reinterpret_cast<const Out*>(old[h]);
#pragma unroll
        for (int i = 0; i < PET_RC; ++i)
          if (i < nc[h]) out[i] = combine(o[i], acc[i] * g.scale);
        if (vec[h]) {
#pragma unroll
          for (int v = 0; v < PET_RC * (int)sizeof(Out) / 16; ++v)
            reinterpret_cast<uint4*>(yp[h])[v] = raw[v];
        } else {
#pragma unroll
          for (int i = 0; i < PET_RC; ++i)
            if (i < nc[h]) yp[h][i] = out[i];
        }
      }
    }
  }
}

// Row-item LoRA onto an f32 output (the attention-output and FFN-down GEMMs' f32 results).
extern "C" __global__ __launch_bounds__(256, 3) void pet_lora_rows_f32(
    const T* x, long ld_x, const int* seg_start, const LoraSeg* segs, int nseg, int nsite,
    int in_dim, float* y, long ld_y, long y_site_stride, int out_dim) {
  lora_rows(x, ld_x, seg_start, segs, nseg, nsite, in_dim, y, ld_y, y_site_stride, out_dim,
            [](float o, float v) { return o + v; });
}

// Row-item LoRA onto a model-dtype output (Q/K/V, FFN up, pooler): y = round(y + delta).
extern "C" __global__ __launch_bounds__(256, 3) void pet_lora_rows_t(
    const T* x, long ld_x, const int* seg_start, const LoraSeg* segs, int nseg, int nsite,
    int in_dim, T* y, long ld_y, long y_site_stride, int out_dim) {
  lora_rows(x, ld_x, seg_start, segs, nseg, nsite, in_dim, y, ld_y, y_site_stride, out_dim,
            [](T o, float v) { return D::st(D::ld(o) + v); });
}

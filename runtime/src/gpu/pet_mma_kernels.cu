// Tensor-core segmented LoRA kernels (kernel option `pet_mma`), appended after
// pet_fused_kernels.cu (pet_kernels.cu's types and helpers, pet_tiled_kernels.cu's `seg_scan`).
//
// The CUDA-core kernels before these (warp, tiled, fused) are latency-bound at a BERT-base
// pass's shape: 22-36 µs a launch where the bytes take about 6 (BENCHMARKS.md). Here both
// products run on the tensor cores with warp-level `mma.sync` (fp16 or bf16 inputs, f32
// accumulation; sm_80 or newer), Punica's SGMV shape on 16-row tiles of one segment:
//   shrink  an item is a tile of 16 rows of a segment; the block's 8 warps split the input
//           dimension (warp w takes the k-steps of 16 numbered w, w + 8, …), each multiplies
//           the tile's x rows by the tenant's A rows over every site (`m16n8k16`, a tile of 8
//           A rows a time), the 8 partial sums are added in warp order through shared memory,
//           and t = round(sum) is stored in the model dtype;
//   expand  an item is (tile of 16 rows, site with a pair, 64 output columns), one warp each:
//           t's 16 rows (rank padded to 8 with zeros) times B's 64 rows (`m16n8k8`, 8 n-tiles),
//           y = y + scale · sum, stored as the other kernels store (f32 outputs `y + v`,
//           model-dtype outputs rounded).
// The products are the same as the other kernels' (t rounded to the model dtype in between);
// the sums' order is the tensor cores', so the outputs match the warp kernels and the CPU
// twins within the 16-bit tolerances, not bit for bit (`tests/pet_tiled_gpu.rs`,
// `tests/pet_gpu.rs`). A row's result does not depend on the rows around it — every tile sums
// in the same order — so a tenant's rows are bit-equal alone or in any mixed batch.
//
// The host launches these only for fp16 and bf16, an input dimension a multiple of 16 and
// 32-bit aligned rows of x, y and t (`PetKernels::fits_mma`); the fused or tiled kernels
// elsewhere. Each 32-bit load of a pair of 16-bit values checks its own alignment (a tenant's
// matrices may lie anywhere), falling back to two 16-bit loads.

// Rows of an item (the m of the mma shapes).
#define PET_MT 16
// The most t columns a shrink item computes at once (8 n-tiles of 8; more: in turns).
#define PET_MN 64
// Output columns of an expand item (8 n-tiles of 8).
#define PET_MC 64
// Warps of a block (the launches use pet.rs's THREADS = 256).
#define PET_MW 8

// The mma instructions for the model dtype; F32 has none (the host never launches these for
// it: `__trap`). Not `volatile`: pure functions of their registers, so the compiler may
// schedule the loads of later k-steps before them.
template <typename DT>
struct Mma {
  static __device__ __forceinline__ void k16(float* d, unsigned a0, unsigned a1, unsigned a2,
                                             unsigned a3, unsigned b0, unsigned b1) {
    __trap();
  }
  static __device__ __forceinline__ void k8(float* d, unsigned a0, unsigned a1, unsigned b0) {
    __trap();
  }
};
template <>
struct Mma<F16> {
  static __device__ __forceinline__ void k16(float* d, unsigned a0, unsigned a1, unsigned a2,
                                             unsigned a3, unsigned b0, unsigned b1) {
    asm(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ void k8(float* d, unsigned a0, unsigned a1, unsigned b0) {
    asm(
        "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(b0));
  }
};
template <>
struct Mma<BF16> {
  static __device__ __forceinline__ void k16(float* d, unsigned a0, unsigned a1, unsigned a2,
                                             unsigned a3, unsigned b0, unsigned b1) {
    asm(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ void k8(float* d, unsigned a0, unsigned a1, unsigned b0) {
    asm(
        "mma.sync.aligned.m16n8k8.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(b0));
  }
};

// p[0] in the low half, p[1] in the high half (the fragments' order): one 32-bit load where
// `p` is 4-byte aligned, else two 16-bit loads.
__device__ __forceinline__ unsigned mma_pair(const T* p) {
  if ((reinterpret_cast<size_t>(p) & 3) == 0) return *reinterpret_cast<const unsigned*>(p);
  const unsigned short* h = reinterpret_cast<const unsigned short*>(p);
  return (unsigned)h[0] | ((unsigned)h[1] << 16);
}

// As `mma_pair`, with p[i] taken as zero where `i >= n` (n ≤ 0: both zero).
__device__ __forceinline__ unsigned mma_pair_n(const T* p, int n) {
  if (n >= 2) return mma_pair(p);
  if (n <= 0) return 0u;
  return (unsigned)*reinterpret_cast<const unsigned short*>(p);
}

// `pet_lora_shrink` on the tensor cores (the tiled shrink's arguments): t_k[row][j] =
// round(x[row]·A_k[j]) for the rows of segments with A at site k.
extern "C" __global__ __launch_bounds__(256) void pet_lora_shrink_mma(
    const T* x, long ld_x, const int* seg_start, const LoraSeg* segs, int nseg, int nsite, T* t,
    long ld_t, int t_site_cols, int in_dim) {
  __shared__ long long pre[PET_MAX_SEG + 1];
  __shared__ float part[PET_MW][PET_MT][PET_MN + 1];
  __shared__ int tile_site[PET_MN / 8];  // each n-tile's site
  __shared__ int tile_j0[PET_MN / 8];    // and its first A row
  long long total = seg_scan(
      nseg,
      [&](int s) -> long long {
        int rows = seg_start[s + 1] - seg_start[s];
        if (rows <= 0 || ranks_of(segs, s, nsite) == 0) return 0;
        return (long long)((rows + PET_MT - 1) / PET_MT);
      },
      pre);
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  int g = lane >> 2, q = lane & 3;
  int nks = in_dim / 16;
  for (long long it = blockIdx.x; it < total; it += gridDim.x) {
    int s = seg_of(pre, nseg, it);
    int row0 = seg_start[s] + (int)(it - pre[s]) * PET_MT;
    int nrows = min(PET_MT, seg_start[s + 1] - row0);
    // The tile's x rows g and g + 8 (null past the segment: zeros).
    const T* x0 = g < nrows ? x + (long)(row0 + g) * ld_x : nullptr;
    const T* x1 = g + 8 < nrows ? x + (long)(row0 + g + 8) * ld_x : nullptr;
    // n-tiles over the sites: site k's rank in tiles of 8 A rows, in turns of PET_MN columns.
    int ntiles = 0;
    for (int k = 0; k < nsite; ++k) {
      LoraSeg sg = segs[s * nsite + k];
      if (sg.a) ntiles += (sg.rank + 7) / 8;
    }
    for (int n0 = 0; n0 < ntiles; n0 += PET_MN / 8) {
      int nt = min(PET_MN / 8, ntiles - n0);
      __syncthreads();  // the previous turn or item is done with `part` and the tile tables
      if (threadIdx.x == 0) {
        int idx = 0;
        for (int k = 0; k < nsite; ++k) {
          LoraSeg sg = segs[s * nsite + k];
          if (!sg.a) continue;
          for (int j0 = 0; j0 < sg.rank; j0 += 8, ++idx) {
            if (idx >= n0 && idx < n0 + nt) {
              tile_site[idx - n0] = k;
              tile_j0[idx - n0] = j0;
            }
          }
        }
      }
      __syncthreads();
      // This lane's A row of each n-tile (the n of the B fragment; null past the rank: zeros).
      const T* ap[PET_MN / 8];
#pragma unroll
      for (int i = 0; i < PET_MN / 8; ++i) {
        ap[i] = nullptr;
        if (i < nt) {
          LoraSeg sg = segs[s * nsite + tile_site[i]];
          int j = tile_j0[i] + g;
          if (j < sg.rank) ap[i] = sg.a + (long)j * in_dim;
        }
      }
      float d[PET_MN / 8][4];
#pragma unroll
      for (int i = 0; i < PET_MN / 8; ++i) d[i][0] = d[i][1] = d[i][2] = d[i][3] = 0.f;
#pragma unroll 3
      for (int ks = w; ks < nks; ks += PET_MW) {
        int c0 = ks * 16 + q * 2;
        unsigned a0 = x0 ? mma_pair(x0 + c0) : 0u;
        unsigned a1 = x1 ? mma_pair(x1 + c0) : 0u;
        unsigned a2 = x0 ? mma_pair(x0 + c0 + 8) : 0u;
        unsigned a3 = x1 ? mma_pair(x1 + c0 + 8) : 0u;
#pragma unroll
        for (int i = 0; i < PET_MN / 8; ++i) {
          if (i < nt) {
            unsigned b0 = ap[i] ? mma_pair(ap[i] + c0) : 0u;
            unsigned b1 = ap[i] ? mma_pair(ap[i] + c0 + 8) : 0u;
            Mma<D>::k16(d[i], a0, a1, a2, a3, b0, b1);
          }
        }
      }
      // The warps' partial sums, added in warp order.
#pragma unroll
      for (int i = 0; i < PET_MN / 8; ++i) {
        if (i < nt) {
          part[w][g][i * 8 + q * 2] = d[i][0];
          part[w][g][i * 8 + q * 2 + 1] = d[i][1];
          part[w][g + 8][i * 8 + q * 2] = d[i][2];
          part[w][g + 8][i * 8 + q * 2 + 1] = d[i][3];
        }
      }
      __syncthreads();
      for (int e = threadIdx.x; e < PET_MT * nt * 8; e += blockDim.x) {
        int rr = e / (nt * 8), col = e % (nt * 8);
        int i = col / 8, j = tile_j0[i] + col % 8, k = tile_site[i];
        if (rr < nrows && j < segs[s * nsite + k].rank) {
          float v = 0.f;
#pragma unroll
          for (int ww = 0; ww < PET_MW; ++ww) v += part[ww][rr][col];
          t[(long)(row0 + rr) * ld_t + (long)k * t_site_cols + j] = D::st(v);
        }
      }
    }
  }
}

// `pet_lora_expand_*` on the tensor cores: y_k[row][c] (+)= scale · t_k[row]·B_k[c] for the
// rows of segments with a pair at site k; `apply(old, v)` is the new value of an output whose
// value was `old`, plus `v`. The products leave the tensor cores in fragments (a lane holds
// two columns of two rows); each warp passes them through shared memory so that its lanes
// read and write y in 16-byte vectors of 8 consecutive outputs (scalar where a vector would
// be misaligned or run past `out_dim`).
template <typename Out, typename Apply>
__device__ void lora_expand_mma(const T* t, long ld_t, int t_site_cols, const int* seg_start,
                                const LoraSeg* segs, int nseg, int nsite, Out* y, long ld_y,
                                long y_site_stride, int out_dim, Apply apply) {
  __shared__ long long pre[PET_MAX_SEG + 1];
  // Each warp's products of its item (+4 floats a row: no bank conflicts between rows g, g+8).
  __shared__ __align__(16) float ds[PET_MW][PET_MT][PET_MC + 4];
  int nchunk = (out_dim + PET_MC - 1) / PET_MC;
  long long total = seg_scan(
      nseg,
      [&](int s) -> long long {
        int rows = seg_start[s + 1] - seg_start[s];
        if (rows <= 0 || pairs_of(segs, s, nsite) == 0) return 0;
        return (long long)((rows + PET_MT - 1) / PET_MT) * nsite * nchunk;
      },
      pre);
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  int g = lane >> 2, q = lane & 3;
  float(*dw)[PET_MC + 4] = ds[w];
  for (long long it = (long long)blockIdx.x * nw + w; it < total;
       it += (long long)gridDim.x * nw) {
    int s = seg_of(pre, nseg, it);
    long long k0 = it - pre[s];
    int tile = (int)(k0 / (nsite * nchunk)), rest = (int)(k0 % (nsite * nchunk));
    int k = rest / nchunk, c0 = (rest % nchunk) * PET_MC;
    LoraSeg sg = segs[s * nsite + k];
    if (!sg.a || !sg.b || sg.rank <= 0) continue;  // no pair at this site: nothing to add
    int row0 = seg_start[s] + tile * PET_MT;
    int nrows = min(PET_MT, seg_start[s + 1] - row0);
    const T* t0 = t + (long)(row0 + g) * ld_t + (long)k * t_site_cols;
    const T* t1 = t0 + 8 * ld_t;
    float d[PET_MC / 8][4];
#pragma unroll
    for (int i = 0; i < PET_MC / 8; ++i) d[i][0] = d[i][1] = d[i][2] = d[i][3] = 0.f;
    for (int q0 = 0; q0 < sg.rank; q0 += 8) {
      int left = sg.rank - q0 - q * 2;  // rank entries at and after this lane's pair
      unsigned a0 = g < nrows ? mma_pair_n(t0 + q0 + q * 2, left) : 0u;
      unsigned a1 = g + 8 < nrows ? mma_pair_n(t1 + q0 + q * 2, left) : 0u;
#pragma unroll
      for (int i = 0; i < PET_MC / 8; ++i) {
        int c = c0 + i * 8 + g;  // this lane's B row (the n of the B fragment)
        unsigned b0 = c < out_dim ? mma_pair_n(sg.b + (long)c * sg.rank + q0 + q * 2, left) : 0u;
        Mma<D>::k8(d[i], a0, a1, b0);
      }
    }
    // Lane (g, q) holds rows g and g + 8, columns 8i + 2q and + 1 of the item.
    __syncwarp();  // the warp's previous item is done reading `dw`
#pragma unroll
    for (int i = 0; i < PET_MC / 8; ++i) {
      dw[g][i * 8 + q * 2] = d[i][0] * sg.scale;
      dw[g][i * 8 + q * 2 + 1] = d[i][1] * sg.scale;
      dw[g + 8][i * 8 + q * 2] = d[i][2] * sg.scale;
      dw[g + 8][i * 8 + q * 2 + 1] = d[i][3] * sg.scale;
    }
    __syncwarp();
    Out* yk = y + k * y_site_stride + (long)row0 * ld_y;
    // 16 rows × 8 vectors of 8 outputs: 4 a lane.
#pragma unroll
    for (int v = lane; v < PET_MT * (PET_MC / 8); v += 32) {
      int rr = v / (PET_MC / 8), cv = (v % (PET_MC / 8)) * 8;
      int c = c0 + cv;
      if (rr >= nrows || c >= out_dim) continue;
      Out* p = yk + (long)rr * ld_y + c;
      const float* dv = &dw[rr][cv];
      if (c + 8 <= out_dim && (reinterpret_cast<size_t>(p) & 15) == 0) {
        // 8 outputs: 16 bytes of a 16-bit dtype, 32 of f32.
        uint4 u[sizeof(Out) / 2];
#pragma unroll
        for (int h = 0; h < (int)(sizeof(Out) / 2); ++h) u[h] = reinterpret_cast<const uint4*>(p)[h];
        Out* o = reinterpret_cast<Out*>(u);
#pragma unroll
        for (int e = 0; e < 8; ++e) o[e] = apply(o[e], dv[e]);
#pragma unroll
        for (int h = 0; h < (int)(sizeof(Out) / 2); ++h) reinterpret_cast<uint4*>(p)[h] = u[h];
      } else {
        for (int e = 0; e < 8 && c + e < out_dim; ++e) p[e] = apply(p[e], dv[e]);
      }
    }
  }
}

// Tensor-core LoRA expand onto an f32 output (`pet_lora_expand_tiled_f32`'s arguments).
extern "C" __global__ __launch_bounds__(256) void pet_lora_expand_mma_f32(
    const T* t, long ld_t, int t_site_cols, const int* seg_start, const LoraSeg* segs,
    int nseg, int nsite, float* y, long ld_y, long y_site_stride, int out_dim) {
  lora_expand_mma(t, ld_t, t_site_cols, seg_start, segs, nseg, nsite, y, ld_y, y_site_stride,
                  out_dim, [](float o, float v) { return o + v; });
}

// Tensor-core LoRA expand onto a model-dtype output: y = round(y + delta).
extern "C" __global__ __launch_bounds__(256) void pet_lora_expand_mma_t(
    const T* t, long ld_t, int t_site_cols, const int* seg_start, const LoraSeg* segs,
    int nseg, int nsite, T* y, long ld_y, long y_site_stride, int out_dim) {
  lora_expand_mma(t, ld_t, t_site_cols, seg_start, segs, nseg, nsite, y, ld_y, y_site_stride,
                  out_dim, [](T o, float v) { return D::st(D::ld(o) + v); });
}

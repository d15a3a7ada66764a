// Kernels of the GPU backend, compiled once per model by NVRTC with `#define DTYPE <F32|F16|BF16>`
// prepended. No headers: half and bfloat16 are handled as 16-bit storage with PTX conversions.
// All arithmetic is in f32; storage is D::S.

struct F32 {
  typedef float S;
  static __device__ __forceinline__ float ld(S v) { return v; }
  static __device__ __forceinline__ S st(float f) { return f; }
};
struct F16 {
  typedef unsigned short S;
  static __device__ __forceinline__ float ld(S v) {
    float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v)); return f;
  }
  static __device__ __forceinline__ S st(float f) {
    S v; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(v) : "f"(f)); return v;
  }
};
struct BF16 {
  typedef unsigned short S;
  static __device__ __forceinline__ float ld(S v) { return __uint_as_float(((unsigned)v) << 16); }
  static __device__ __forceinline__ S st(float f) {
    S v; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(v) : "f"(f)); return v;
  }
};

typedef DTYPE D;
typedef D::S T;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Sum over the block (blockDim.x a multiple of 32, at most 1024); `sh` holds 32 floats.
__device__ float block_sum(float v, float* sh) {
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) sh[w] = v;
  __syncthreads();
  int nw = blockDim.x >> 5;
  v = (threadIdx.x < nw) ? sh[threadIdx.x] : 0.f;
  if (w == 0) v = warp_sum(v);
  if (threadIdx.x == 0) sh[0] = v;
  __syncthreads();
  float r = sh[0];
  __syncthreads();
  return r;
}

// Normalises row[0..H) (shared memory) and writes it to out (model dtype, the next GEMM's input)
// and out32 (f32, the residual stream).
__device__ void ln_row(float* row, float* sh, const T* g, const T* b, T* out, float* out32, int H,
                       float eps) {
  float s = 0.f;
  for (int i = threadIdx.x; i < H; i += blockDim.x) s += row[i];
  float mean = block_sum(s, sh) / H;
  float q = 0.f;
  for (int i = threadIdx.x; i < H; i += blockDim.x) { float d = row[i] - mean; q += d * d; }
  float rstd = rsqrtf(block_sum(q, sh) / H + eps);
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    float v = (row[i] - mean) * rstd * D::ld(g[i]) + D::ld(b[i]);
    out[i] = D::st(v);
    out32[i] = v;
  }
}

// One block per token: word + position + type embedding, then layer norm.
extern "C" __global__ void embed_ln(const int* ids, const int* types, const T* word, const T* pos,
                                    const T* typ, const T* g, const T* b, T* out, float* out32,
                                    int Sq, int H, int pos_off, float eps) {
  extern __shared__ float smem[];
  float* sh = smem; float* row = smem + 32;
  long t = blockIdx.x;
  int s = (int)(t % Sq);
  long id = ids[t], tt = types[t];
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    row[i] = D::ld(word[id * H + i]) + D::ld(pos[(long)(s + pos_off) * H + i]) + D::ld(typ[tt * H + i]);
  }
  __syncthreads();
  ln_row(row, sh, g, b, out + t * H, out32 + t * H, H, eps);
}

// One block per row: out = LN(y + bias + res), with y (GEMM output) and res in f32.
extern "C" __global__ void bias_res_ln(const float* y, const T* bias, const float* res,
                                       const T* g, const T* b, T* out, float* out32, int H,
                                       float eps) {
  extern __shared__ float smem[];
  float* sh = smem; float* row = smem + 32;
  long r = blockIdx.x;
  for (int i = threadIdx.x; i < H; i += blockDim.x)
    row[i] = y[r * H + i] + D::ld(bias[i]) + res[r * H + i];
  __syncthreads();
  ln_row(row, sh, g, b, out + r * H, out32 + r * H, H, eps);
}

// qkv: [3][n][H] GEMM outputs; adds the biases (q, k, v at bias0 + w*bias_stride) and writes
// out: [3][B][nh][Sq][dh]. Grid (n tokens, 3).
extern "C" __global__ void split_heads(const T* qkv, const T* bias0, long bias_stride, T* out,
                                       int n, int Sq, int H, int dh) {
  int tok = blockIdx.x, w = blockIdx.y, bb = tok / Sq, s = tok - bb * Sq, nh = H / dh;
  const T* src = qkv + ((long)w * n + tok) * H;
  const T* bias = bias0 + w * bias_stride;
  T* dst = out + (long)w * n * H + ((long)bb * nh * Sq + s) * dh;
  for (int c = threadIdx.x; c < H; c += blockDim.x) {
    int h = c / dh, d = c - h * dh;
    dst[(long)h * Sq * dh + d] = D::st(D::ld(src[c]) + D::ld(bias[c]));
  }
}

// ctx: [B][nh][Sq][dh] -> out: [B][Sq][H]. Grid (n tokens).
extern "C" __global__ void merge_heads(const T* ctx, T* out, int Sq, int H, int dh) {
  int tok = blockIdx.x, bb = tok / Sq, s = tok - bb * Sq, nh = H / dh;
  const T* src = ctx + ((long)bb * nh * Sq + s) * dh;
  for (int c = threadIdx.x; c < H; c += blockDim.x) {
    int h = c / dh, d = c - h * dh;
    out[(long)tok * H + c] = src[(long)h * Sq * dh + d];
  }
}

// One warp per score row ([B*nh*Sq] rows of Sq, already scaled): masked softmax into probs.
extern "C" __global__ void masked_softmax(const float* scores, const int* mask, T* probs,
                                          long rows, int Sq, int nh) {
  long row = blockIdx.x * (long)(blockDim.x >> 5) + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (row >= rows) return;
  long bb = row / ((long)nh * Sq);
  const float* x = scores + row * Sq;
  const int* m = mask + bb * Sq;
  float mx = __int_as_float(0xff800000);
  for (int j = lane; j < Sq; j += 32) if (m[j]) mx = fmaxf(mx, x[j]);
  mx = warp_max(mx);
  float sum = 0.f;
  for (int j = lane; j < Sq; j += 32) if (m[j]) sum += expf(x[j] - mx);
  sum = warp_sum(sum);
  float inv = sum > 0.f ? 1.f / sum : 0.f;
  for (int j = lane; j < Sq; j += 32)
    probs[row * Sq + j] = D::st(m[j] ? expf(x[j] - mx) * inv : 0.f);
}

// x[r][c] = act(x[r][c] + bias[c]); act 0 none, 1 GELU (erf), 2 GELU (tanh), 3 ReLU, 4 tanh.
// Grid (rows).
extern "C" __global__ void bias_act(T* x, const T* bias, int cols, int act) {
  T* row = x + (long)blockIdx.x * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    float v = D::ld(row[c]) + D::ld(bias[c]);
    if (act == 1) v = 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
    else if (act == 2) v = 0.5f * v * (1.f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    else if (act == 3) v = fmaxf(v, 0.f);
    else if (act == 4) v = tanhf(v);
    row[c] = D::st(v);
  }
}

// logits[r][c] += bias[c] (f32 logits, bias in T). Grid (rows).
extern "C" __global__ void bias_f32(float* x, const T* bias, int cols) {
  float* row = x + (long)blockIdx.x * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) row[c] += D::ld(bias[c]);
}

// out[b][:] = x[b][0][:] (first token of each row). Grid (B).
extern "C" __global__ void gather_first(const T* x, T* out, int Sq, int H) {
  for (int c = threadIdx.x; c < H; c += blockDim.x)
    out[(long)blockIdx.x * H + c] = x[(long)blockIdx.x * Sq * H + c];
}

// One block per row b: mean of x[b][s][:] over the real tokens, L2-normalised, as f32.
extern "C" __global__ void mean_pool_norm(const T* x, const int* mask, float* out, int Sq, int H) {
  extern __shared__ float smem[];
  float* sh = smem; float* row = smem + 32;
  long bb = blockIdx.x;
  int cnt = 0;
  for (int s = 0; s < Sq; ++s) cnt += mask[bb * Sq + s] != 0;
  float q = 0.f;
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    float acc = 0.f;
    for (int s = 0; s < Sq; ++s)
      if (mask[bb * Sq + s]) acc += D::ld(x[(bb * Sq + s) * H + i]);
    acc /= fmaxf((float)cnt, 1e-9f);
    row[i] = acc;
    q += acc * acc;
  }
  float norm = fmaxf(sqrtf(block_sum(q, sh)), 1e-12f);
  for (int i = threadIdx.x; i < H; i += blockDim.x) out[bb * H + i] = row[i] / norm;
}

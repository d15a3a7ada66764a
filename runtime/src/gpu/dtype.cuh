// The storage types of the backend's NVRTC sources (`kernels.cu`, `pet_kernels.cu`), placed
// after `#define DTYPE <F32|F16|BF16>` by `gpu/kernels.rs` (`dtype_define`, `DTYPE_CUH`). No
// headers: half and bfloat16 are 16-bit storage with PTX conversions; all arithmetic is f32.

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

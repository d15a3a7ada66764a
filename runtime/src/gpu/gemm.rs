//! The GEMMs of a forward pass as typed descriptors: each operand names its address, leading
//! dimension and batch stride, so a call site reads as what it multiplies. Column-major, as
//! cuBLAS sees the row-major tensors: a row-major `[rows, cols]` tensor is a `cols × rows`
//! column-major matrix with leading dimension `cols`. No CUDA here (the calls are in `cuda.rs`
//! and `lt.rs`).

/// A matrix in device memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matrix {
    /// Device address of the first (or only) matrix.
    pub ptr: u64,
    /// Leading dimension, elements.
    pub ld: usize,
    /// Elements between the matrices of a batch (0: one matrix, or one shared by the batch).
    pub stride: usize,
}

impl Matrix {
    /// One matrix at `ptr` with leading dimension `ld`.
    pub fn new(ptr: u64, ld: usize) -> Self {
        Matrix { ptr, ld, stride: 0 }
    }

    /// A batch of matrices at `ptr`, `stride` elements apart.
    pub fn strided(ptr: u64, ld: usize, stride: usize) -> Self {
        Matrix { ptr, ld, stride }
    }
}

/// `C = alpha · op(A) · B + beta · C` over `batch` matrices, f32 accumulation; A and B in the
/// model dtype, C in the model dtype or f32 (`c_f32`). `op(A)` is `Aᵀ` when `trans_a`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gemm {
    /// Whether A is transposed (the weights: row-major `[out, in]`).
    pub trans_a: bool,
    /// Rows of C (and of op(A)).
    pub m: usize,
    /// Columns of C (and of B).
    pub n: usize,
    /// The inner dimension.
    pub k: usize,
    /// The left operand.
    pub a: Matrix,
    /// The right operand.
    pub b: Matrix,
    /// The output (also the input when `beta` ≠ 0).
    pub c: Matrix,
    /// Matrices in the batch.
    pub batch: usize,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of C's previous contents (0: C is only written).
    pub beta: f32,
    /// Whether C is f32 (else the model dtype).
    pub c_f32: bool,
}

impl Gemm {
    /// A weight product `C (m × n) = Wᵀ-as-stored · B`: `w` is a row-major `[m, k]` weight
    /// (one matrix, or `batch` of them `w.stride` apart), `b` the `[n, k]` row-major input,
    /// `c` the `[n, m]` row-major output; α = 1, β = 0, C in the model dtype.
    pub fn weights(m: usize, n: usize, k: usize, w: Matrix, b: Matrix, c: Matrix) -> Self {
        Gemm {
            trans_a: true,
            m,
            n,
            k,
            a: w,
            b,
            c,
            batch: 1,
            alpha: 1.0,
            beta: 0.0,
            c_f32: false,
        }
    }

    /// The same product over `batch` matrices.
    pub fn batched(self, batch: usize) -> Self {
        Gemm { batch, ..self }
    }

    /// The same product with an f32 output.
    pub fn f32_out(self) -> Self {
        Gemm {
            c_f32: true,
            ..self
        }
    }

    /// The same product added onto C (β = 1).
    pub fn accumulate(self) -> Self {
        Gemm { beta: 1.0, ..self }
    }
}

/// A bias added in a GEMM's epilogue: one model-dtype value per row of C (an output feature),
/// `stride` elements between the vectors of a batch's matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bias {
    /// Device address of the first vector.
    pub ptr: u64,
    /// Elements between the batch's vectors.
    pub stride: usize,
}

/// Matrices given by device arrays of `batch` pointers (attention heads read in place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pointers {
    /// Device address of the array of `batch` matrix addresses.
    pub array: u64,
    /// Leading dimension of every matrix, elements.
    pub ld: usize,
}

/// `C_i = alpha · op(A_i) · B_i` for `batch` matrices given by pointer arrays (β = 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointerGemm {
    /// Whether every A_i is transposed.
    pub trans_a: bool,
    /// Rows of each C_i.
    pub m: usize,
    /// Columns of each C_i.
    pub n: usize,
    /// The inner dimension.
    pub k: usize,
    /// The left operands.
    pub a: Pointers,
    /// The right operands.
    pub b: Pointers,
    /// The outputs.
    pub c: Pointers,
    /// Matrices in the batch.
    pub batch: usize,
    /// Scale of the products.
    pub alpha: f32,
    /// Whether each C_i is f32 (else the model dtype).
    pub c_f32: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_change_one_field_each() {
        let g = Gemm::weights(
            8,
            4,
            2,
            Matrix::new(1, 2),
            Matrix::new(2, 2),
            Matrix::new(3, 8),
        );
        assert!(g.trans_a && g.batch == 1 && g.alpha == 1.0 && g.beta == 0.0 && !g.c_f32);
        let h = g.batched(3).f32_out().accumulate();
        assert_eq!((h.batch, h.c_f32, h.beta), (3, true, 1.0));
        assert_eq!(
            (h.m, h.n, h.k, h.a, h.b, h.c),
            (g.m, g.n, g.k, g.a, g.b, g.c)
        );
    }
}

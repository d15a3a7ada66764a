//! The fast-weight runtime: BERT-family encoders on the GPU (cudarc) and the CPU (candle).
//!
//! Not built yet: this crate is a placeholder so that the workspace has the shape the design
//! card asks for. The README's status table says what works today.

//! The core of torch_to_nnef: NNEF tensor files, Q4_0 packing, model archives and an in-process
//! tract runner. Plain Rust: the Python binding lives in `python.rs` only.
#![deny(missing_docs)]

pub mod alloc;
pub mod archive;
pub mod compare;
pub mod dat;
pub mod dtype;
pub mod error;
pub mod fsutil;
pub mod q4_0;
pub mod runner;
pub mod view;

#[cfg(feature = "python")]
mod python;

#[global_allocator]
static ALLOCATOR: alloc::LargeBlocksMapped = alloc::LargeBlocksMapped;

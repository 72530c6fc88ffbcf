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
pub mod q40tensor;
pub mod q4_0;
pub mod runner;
pub mod stream;
pub mod view;

#[cfg(feature = "python")]
mod python;

/// The Python extension's allocator ([`alloc::LargeBlocksMapped`]), installed in that build only.
///
/// A global allocator belongs to the final artifact, not to a library: installed here, it would
/// be forced on every program that links the core as an rlib (clashing with any allocator of
/// their own) and on `cargo test`. The extension is its own shared library loaded into Python,
/// where it serves only this library's Rust code (tract's included), which is what it is tuned
/// for; Python's and PyTorch's allocations never go through it. The `alloc` module itself is
/// built, and its tests run, either way.
#[cfg(feature = "python")]
#[global_allocator]
static ALLOCATOR: alloc::LargeBlocksMapped = alloc::LargeBlocksMapped;

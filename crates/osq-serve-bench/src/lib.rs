//! osq-serve-bench: latency that users can trust, side by side with our FP32 forward and with
//! its peers, ONNX Runtime and OpenVINO int8. See `docs/bench.md`.
//!
//! - [`engine`]: the engines (`osq-fp32`, `osq-int8`, `osq-int4`) and thread contexts;
//! - [`inputs`]: real sentences → batches of exactly `seq` tokens;
//! - [`grid`]: the (batch, seq, threads) grid, engines timed in interleaved blocks, outputs
//!   asserted identical across thread counts;
//! - [`stats`]: percentiles and the record format shared with `tools/onnx_bench.py`;
//! - [`report`]: ratios, table, CSV, SVG;
//! - [`peers`]: ONNX Runtime and OpenVINO timed in the same interleaved blocks (Python worker);
//! - [`peak`]: the measured `vpdpbusd` peak that "% of peak" figures are relative to;
//! - [`memory`]: peak RSS per engine in a fresh child process, resident weight bytes;
//! - [`serve`]: concurrent mode (one shared engine behind a batching queue, every answer checked);
//! - [`profile`]: per-stage timing of the integer forward (the executor's own stage timers).

pub mod engine;
pub mod grid;
pub mod http;
pub mod inputs;
pub mod memory;
pub mod peak;
pub mod peers;
pub mod profile;
pub mod report;
pub mod serve;
pub mod stats;

pub use engine::{Engine, EngineKind, Output, Threads};

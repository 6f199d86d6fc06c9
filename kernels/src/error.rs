//! Errors of the kernel API: every bad argument is reported, never undefined behaviour.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KernelError {
    #[error("shape mismatch: {0}")]
    Shape(String),
    #[error("buffer too short: {what} needs {needed} elements, got {got}")]
    Buffer {
        what: &'static str,
        needed: usize,
        got: usize,
    },
    #[error("value out of range: {0}")]
    Range(String),
    #[error("ISA {0} is not available on this CPU")]
    IsaUnavailable(&'static str),
}

pub type Result<T> = std::result::Result<T, KernelError>;

//! Serving benchmark.

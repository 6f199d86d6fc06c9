//! Thread counts and the thread pool every compute path runs in: a private rayon pool per
//! model or calibration (never the ambient global pool), its size capped at the machine's
//! parallelism (more threads than cores only slow integer kernels down: 1000 threads made a
//! calibration 50× slower).

use rayon::prelude::*;

use crate::error::{ModelError, Result};

/// The machine's parallelism (1 when it cannot be read).
pub fn available_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// `requested` threads, 0 meaning all cores, capped at [`available_threads`] with a warning on
/// stderr.
pub fn resolve_threads(requested: usize) -> usize {
    let avail = available_threads();
    match requested {
        0 => avail,
        n if n > avail => {
            eprintln!(
                "osq: warning: {n} threads requested, this machine has {avail}: using {avail}"
            );
            avail
        }
        n => n,
    }
}

/// Thread configuration of the FP32 forward. `threads == 1` runs everything on the calling
/// thread; otherwise a private rayon pool of that size runs the matmuls and row loops.
#[derive(Debug)]
pub struct ThreadPool {
    threads: usize,
    pool: Option<rayon::ThreadPool>,
}

impl ThreadPool {
    /// `threads == 0` means all available cores.
    pub fn new(threads: usize) -> Result<Self> {
        let threads = resolve_threads(threads);
        if threads == 1 {
            return Ok(Self::single());
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| ModelError::Input(format!("cannot build a {threads}-thread pool: {e}")))?;
        Ok(ThreadPool {
            threads,
            pool: Some(pool),
        })
    }

    /// Single-threaded execution.
    pub fn single() -> Self {
        ThreadPool {
            threads: 1,
            pool: None,
        }
    }

    /// Threads of this pool.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Parallelism to hand to `gemm` (only meaningful inside [`ThreadPool::run`]).
    pub fn gemm_parallelism(&self) -> gemm::Parallelism {
        if self.threads > 1 {
            gemm::Parallelism::Rayon(self.threads)
        } else {
            gemm::Parallelism::None
        }
    }

    /// Run `f` inside the pool (or directly when single-threaded).
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    /// Apply `f(index, chunk)` to consecutive `chunk`-sized pieces of `data`, in parallel
    /// when the context has several threads.
    pub fn for_each_chunk<T: Send>(
        &self,
        data: &mut [T],
        chunk: usize,
        f: impl Fn(usize, &mut [T]) + Send + Sync,
    ) {
        if chunk == 0 || data.is_empty() {
            return;
        }
        match &self.pool {
            Some(p) => p.install(|| {
                data.par_chunks_mut(chunk)
                    .enumerate()
                    .for_each(|(i, c)| f(i, c))
            }),
            None => data
                .chunks_mut(chunk)
                .enumerate()
                .for_each(|(i, c)| f(i, c)),
        }
    }
}

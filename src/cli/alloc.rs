//! Allocator tuning for the long calibration searches.
//!
//! Calibration runs the fake-quant FP32 model hundreds of times and allocates each layer's
//! multi-megabyte outputs afresh. With glibc's defaults those buffers are mmap'd and returned to
//! the kernel on every free, so each forward pays for zeroing new pages (≈ 14 % of a profiled OS
//! search, in `clear_page_erms`). Keeping freed memory in the heap removes that; the numbers
//! computed are unchanged. Only the CLI does this: a library must not retune its host's allocator.

/// Keep freed blocks up to 32 MiB in the heap and never trim it (glibc only; elsewhere a no-op).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc's largest allowed value
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        // SAFETY: mallopt only sets allocator parameters; it is called before the calibration's
        // worker threads start and takes plain integers.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
        }
    }
}

//! Strided matrix views. Attention reads Q, K, V per head in place, so every operand is a view with
//! its own row stride rather than a contiguous copy.

use crate::error::{KernelError, Result};

/// A read-only row-major view: element (r, c) is `data[r * stride + c]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    stride: usize,
}

impl<'a, T: Copy> MatRef<'a, T> {
    pub fn new(data: &'a [T], rows: usize, cols: usize, stride: usize) -> Result<Self> {
        check_view("matrix", data.len(), rows, cols, stride)?;
        Ok(Self {
            data,
            rows,
            cols,
            stride,
        })
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn stride(&self) -> usize {
        self.stride
    }
    pub fn data(&self) -> &'a [T] {
        self.data
    }
    /// Row `r` (length `cols`). Panics if `r >= rows` (an internal invariant, not user input).
    pub fn row(&self, r: usize) -> &'a [T] {
        &self.data[r * self.stride..r * self.stride + self.cols]
    }
    pub fn get(&self, r: usize, c: usize) -> T {
        self.data[r * self.stride + c]
    }
}

/// A mutable row-major view.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
    stride: usize,
}

impl<'a, T: Copy> MatMut<'a, T> {
    pub fn new(data: &'a mut [T], rows: usize, cols: usize, stride: usize) -> Result<Self> {
        check_view("output matrix", data.len(), rows, cols, stride)?;
        Ok(Self {
            data,
            rows,
            cols,
            stride,
        })
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn stride(&self) -> usize {
        self.stride
    }
    pub fn row_mut(&mut self, r: usize) -> &mut [T] {
        &mut self.data[r * self.stride..r * self.stride + self.cols]
    }
    pub(crate) fn as_mut_ptr(&mut self) -> *mut T {
        self.data.as_mut_ptr()
    }
}

fn check_view(
    what: &'static str,
    len: usize,
    rows: usize,
    cols: usize,
    stride: usize,
) -> Result<()> {
    if stride < cols {
        return Err(KernelError::Shape(format!(
            "{what}: row stride {stride} is smaller than the {cols} columns"
        )));
    }
    let needed = if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1)
            .checked_mul(stride)
            .and_then(|x| x.checked_add(cols))
            .ok_or_else(|| {
                KernelError::Shape(format!("{what}: {rows}x{cols} stride {stride} overflows"))
            })?
    };
    if len < needed {
        return Err(KernelError::Buffer {
            what,
            needed,
            got: len,
        });
    }
    Ok(())
}

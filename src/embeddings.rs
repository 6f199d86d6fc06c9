//! [`Embeddings`]: an n × dim matrix of f32, row per input text, with each text's token count.

/// Sentence embeddings, one row per input text, row-major.
///
/// ```
/// # let model = osq::Model::load(osq_model::testing::doc_params_dir())?;
/// let e = model.embed(&["one", "two words"])?;
/// for (i, row) in e.rows().enumerate() {
///     println!("{i}: {} tokens, {:?}…", e.tokens()[i], &row[..4]);
/// }
/// assert_eq!(e.as_slice().len(), 2 * e.dim());
/// # Ok::<(), osq::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    data: Vec<f32>,
    dim: usize,
    tokens: Vec<usize>,
}

impl Embeddings {
    pub(crate) fn new(data: Vec<f32>, dim: usize, tokens: Vec<usize>) -> Embeddings {
        debug_assert_eq!(data.len(), dim * tokens.len());
        Embeddings { data, dim, tokens }
    }

    /// Number of rows (texts).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `i`.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The rows in order.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim.max(1))
    }

    /// All values, row-major (`len() · dim()`).
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// Tokens each text was run with (special tokens included, after truncation).
    pub fn tokens(&self) -> &[usize] {
        &self.tokens
    }

    /// The values, row-major.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// The rows of `parts`, in order (all of one dimension).
    ///
    /// ```
    /// # let model = osq::Model::load(osq_model::testing::doc_params_dir())?;
    /// let all = model.embed(&["a", "b", "c"])?;
    /// let parts = vec![model.embed(&["a"])?, model.embed(&["b", "c"])?];
    /// assert_eq!(osq::Embeddings::concat(parts), all);
    /// # Ok::<(), osq::Error>(())
    /// ```
    pub fn concat(parts: Vec<Embeddings>) -> Embeddings {
        let dim = parts.first().map_or(0, |p| p.dim);
        let mut data = Vec::new();
        let mut tokens = Vec::new();
        for p in parts {
            debug_assert_eq!(p.dim, dim);
            data.extend(p.data);
            tokens.extend(p.tokens);
        }
        Embeddings { data, dim, tokens }
    }
}

//! Python bindings of the `osq` library: `osq.Model` (encode, verify, info), `osq.calibrate`.
//! Compute runs with the GIL released (the model has its own thread pool and is `Send + Sync`,
//! so Python threads may share one model); errors become `OSError` (files) or `ValueError`.

use std::path::PathBuf;

use numpy::{PyArray2, PyArrayMethods};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

fn to_py(e: osq::Error) -> PyErr {
    match e.kind() {
        osq::ErrorKind::Io => PyOSError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

fn json_to_py(py: Python<'_>, v: &serde_json::Value) -> PyResult<Py<PyAny>> {
    let json = py.import("json")?;
    Ok(json.call_method1("loads", (v.to_string(),))?.unbind())
}

fn isa_of(name: &str) -> PyResult<osq::Isa> {
    osq::Isa::ALL
        .into_iter()
        .find(|i| i.name() == name)
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "isa {name:?}: expected one of scalar, avx2, avx512vnni, amx-int8, neon, neon-dotprod"
            ))
        })
}

/// A quantized model on the integer engine.
#[pyclass(frozen, module = "osq")]
struct Model {
    inner: osq::Model,
}

#[pymethods]
impl Model {
    #[new]
    #[pyo3(signature = (path, threads = 0, isa = None, max_length = None, truncate = true, batch_size = 32))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        threads: usize,
        isa: Option<&str>,
        max_length: Option<usize>,
        truncate: bool,
        batch_size: usize,
    ) -> PyResult<Model> {
        let isa = isa.map(isa_of).transpose()?;
        let opts = osq::ModelOptions {
            threads,
            isa,
            max_length,
            truncate,
            batch_size,
        };
        let inner = py
            .detach(|| osq::Model::load_with(&path, opts))
            .map_err(to_py)?;
        Ok(Model { inner })
    }

    /// Sentence embeddings, a float32 array of shape (len(texts), dim); `normalize` None follows
    /// the model (its sentence-transformers `Normalize` module, normalised when it has none).
    #[pyo3(signature = (texts, batch_size = None, normalize = None, truncate = None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        batch_size: Option<usize>,
        normalize: Option<bool>,
        truncate: Option<bool>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        if batch_size == Some(0) {
            return Err(PyValueError::new_err("batch_size must be at least 1"));
        }
        let eo = osq::EmbedOptions {
            truncate,
            normalize,
        };
        let step = batch_size.unwrap_or(usize::MAX);
        let e = py
            .detach(|| -> osq::Result<(Vec<f32>, usize)> {
                let mut data = Vec::new();
                let mut dim = self.inner.dim();
                for chunk in texts.chunks(step.max(1)) {
                    let e = self.inner.embed_with(chunk, &eo)?;
                    dim = e.dim();
                    data.extend_from_slice(e.as_slice());
                }
                Ok((data, dim))
            })
            .map_err(to_py)?;
        let (data, dim) = e;
        let n = texts.len();
        let arr = numpy::PyArray1::from_vec(py, data);
        arr.reshape([n, dim])
    }

    /// Token counts of each text (special tokens included, before truncation).
    fn count_tokens(&self, py: Python<'_>, texts: Vec<String>) -> PyResult<Vec<usize>> {
        py.detach(|| self.inner.count_tokens(&texts)).map_err(to_py)
    }

    /// Compares the integer codes with the fake-quant references; returns the report as a dict.
    #[pyo3(signature = (texts, fp32_model = None, isas = None, batch_size = 32))]
    fn verify(
        &self,
        py: Python<'_>,
        texts: Vec<String>,
        fp32_model: Option<PathBuf>,
        isas: Option<Vec<String>>,
        batch_size: usize,
    ) -> PyResult<Py<PyAny>> {
        let isas = isas
            .unwrap_or_default()
            .iter()
            .map(|s| isa_of(s))
            .collect::<PyResult<Vec<_>>>()?;
        let opts = osq::VerifyOptions {
            isas,
            fp32_model,
            batch_size,
            progress: false,
        };
        let r = py
            .detach(|| self.inner.verify(&texts, &opts))
            .map_err(to_py)?;
        json_to_py(py, &r.to_json())
    }

    /// The task head's predictions, one dict per text: `label`, `score`, `scores` (label →
    /// score), `logits`; multi-label heads add `labels`, token heads `tokens`. Raises
    /// ValueError for an embedding model (no head).
    fn classify(&self, py: Python<'_>, texts: Vec<String>) -> PyResult<Py<PyAny>> {
        let preds = py
            .detach(|| self.inner.classify(&texts))
            .map_err(to_py)?;
        let labels: Vec<String> = self
            .inner
            .head()
            .map(|(_, l)| l.to_vec())
            .unwrap_or_default();
        let row = |p: &osq::Prediction| {
            let scores: serde_json::Map<String, serde_json::Value> = labels
                .iter()
                .cloned()
                .zip(p.scores.iter().map(|&s| serde_json::json!(s)))
                .collect();
            serde_json::json!({
                "label": p.label, "score": p.score, "scores": scores, "logits": p.logits,
                "labels": p.labels,
                "tokens": p.tokens.iter().map(|t| serde_json::json!({"label": t.label, "score": t.score})).collect::<Vec<_>>(),
            })
        };
        let v: Vec<serde_json::Value> = preds.iter().map(row).collect();
        json_to_py(py, &serde_json::Value::Array(v))
    }

    /// The task head, `(task, labels)`, or None for an embedding model.
    fn head(&self) -> Option<(String, Vec<String>)> {
        self.inner
            .head()
            .map(|(t, l)| (t.to_string(), l.to_vec()))
    }

    /// What the model is and how it runs.
    fn info(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let v = serde_json::to_value(self.inner.info())
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        json_to_py(py, &v)
    }

    /// Embedding dimension.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn __repr__(&self) -> String {
        let i = self.inner.info();
        format!(
            "osq.Model({:?}, bits={}, method={}, isa={}, threads={})",
            i.params.display().to_string(),
            i.bits,
            i.method,
            i.isa,
            i.threads
        )
    }
}

fn method_of(s: &str) -> PyResult<osq::Method> {
    osq::Method::parse(s).ok_or_else(|| {
        PyValueError::new_err(format!(
            "method {s:?}: expected one of minmax, minmax-mean, percentile, omse, os, os+"
        ))
    })
}

fn bits_of(s: &str) -> PyResult<osq::Bits> {
    osq::Bits::parse(s).ok_or_else(|| {
        PyValueError::new_err(format!(
            "bits {s:?}: expected one of {}",
            osq::Bits::names()
        ))
    })
}

/// Calibrates the FP32 model `model_dir` on the texts of `data` and writes the parameter
/// directory `output`; returns the calibration report as a dict. `max_len`: tokens per text
/// (longer ones are truncated; 512 for a long-document task). `loss`: what Token-Wise Clipping
/// compares with the FP32 model — `"hidden"` (every token's final hidden state), `"logits"` (a
/// fine-tuned model's task head) or `"auto"` (logits when the model has a head).
#[pyfunction]
#[pyo3(signature = (model_dir, data, output, method = "minmax", bits = "w8a8", samples = 256, seed = 0, gamma = true, threads = 0, max_len = 128, loss = "hidden"))]
#[allow(clippy::too_many_arguments)]
fn calibrate(
    py: Python<'_>,
    model_dir: PathBuf,
    data: PathBuf,
    output: PathBuf,
    method: &str,
    bits: &str,
    samples: usize,
    seed: u64,
    gamma: bool,
    threads: usize,
    max_len: usize,
    loss: &str,
) -> PyResult<Py<PyAny>> {
    let opts = osq::CalibOptions {
        loss: osq::Loss::parse(loss).ok_or_else(|| {
            PyValueError::new_err(format!(
                "loss {loss:?}: expected one of auto, hidden, logits"
            ))
        })?,
        method: method_of(method)?,
        bits: bits_of(bits)?,
        samples,
        seed,
        gamma,
        threads,
        max_len,
        ..Default::default()
    };
    let report = py
        .detach(|| -> osq::Result<serde_json::Value> {
            let c = osq::calibrate(&model_dir, &data, &opts)?;
            c.save(&output)?;
            serde_json::to_value(c.report()).map_err(|e| osq::Error::Input(e.to_string()))
        })
        .map_err(to_py)?;
    json_to_py(py, &report)
}

#[pymodule]
fn _osq(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(calibrate, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

//! The task head of a fine-tuned model on the integer engine: labels and scores per text (or
//! per token), from logits the engine computes in integers up to the last GEMM's accumulators.

use osq_model::head::{argmax, scores, Task};
use osq_model::quant::integer::IntOptions;

use crate::error::{Error, Result};
use crate::model::Model;

/// The head's answer for one text (token heads: one per token, in [`Prediction::tokens`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// Top label (regression: empty).
    pub label: String,
    /// Its score: softmax probability (single-label), sigmoid (multi-label), the value
    /// (regression).
    pub score: f32,
    /// Scores of every label, in label order (regression: the value).
    pub scores: Vec<f32>,
    /// The raw logits.
    pub logits: Vec<f32>,
    /// Multi-label heads: every label whose sigmoid is ≥ 0.5.
    pub labels: Vec<String>,
    /// Token heads: one prediction per token (special tokens included), else empty.
    pub tokens: Vec<Prediction>,
}

fn predict_row(task: Task, labels: &[String], logits: &[f32]) -> Prediction {
    let s = scores(task, logits);
    let top = argmax(logits);
    Prediction {
        label: if task == Task::Regression {
            String::new()
        } else {
            labels[top].clone()
        },
        score: s[top],
        labels: if task == Task::MultiLabel {
            labels
                .iter()
                .zip(&s)
                .filter(|(_, &p)| p >= 0.5)
                .map(|(l, _)| l.clone())
                .collect()
        } else {
            vec![]
        },
        scores: s,
        logits: logits.to_vec(),
        tokens: vec![],
    }
}

impl Model {
    /// The task (`single_label_classification`, `multi_label_classification`, `regression`,
    /// `token_classification`) and labels of the model's head, if it has one.
    ///
    /// ```
    /// # let model = osq::Model::load(osq_model::testing::doc_params_dir())?;
    /// let (task, labels) = model.head().expect("the doc model is a 2-way classifier");
    /// assert_eq!(task, "single_label_classification");
    /// assert_eq!(labels.len(), 2);
    /// # Ok::<(), osq::Error>(())
    /// ```
    pub fn head(&self) -> Option<(&'static str, &[String])> {
        let (im, ..) = self.parts();
        im.quant()
            .params
            .head
            .as_ref()
            .map(|h| (h.task.name(), &h.labels[..]))
    }

    /// Runs the task head on `texts`: one [`Prediction`] per text, in input order. Errors when
    /// the parameters have no head (an embedding model).
    ///
    /// ```
    /// # let model = osq::Model::load(osq_model::testing::doc_params_dir())?;
    /// let p = model.classify(&["a gripping film", "dull and overlong"])?;
    /// assert_eq!(p.len(), 2);
    /// assert!(p[0].score > 0.0 && p[0].score <= 1.0);
    /// # Ok::<(), osq::Error>(())
    /// ```
    pub fn classify<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Prediction>> {
        let (im, tok, pool, max_len) = self.parts();
        let hp = im.quant().params.head.as_ref().ok_or_else(|| {
            Error::Input(format!(
                "{}: the model has no task head (it was calibrated from an embedding model, not a *ForSequenceClassification / *ForTokenClassification checkpoint)",
                self.info().params.display()
            ))
        })?;
        let nl = hp.num_labels();
        let opts = IntOptions {
            isa: Some(self.isa()),
            trace: false,
        };
        let mut res = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.batch_size()) {
            let refs: Vec<&str> = chunk.iter().map(AsRef::as_ref).collect();
            let (batch, _) = tok.encode_batch_checked(&refs, max_len, self.truncates())?;
            let out = pool.install(|| im.forward(&batch, &opts))?;
            let ho = out
                .head
                .ok_or_else(|| Error::Input("the integer engine returned no head output".into()))?;
            for b in 0..batch.batch {
                if hp.task == Task::Token {
                    let (o, len) = (out.offsets[b], out.lengths[b]);
                    let rows = &ho.logits[o * nl..(o + len) * nl];
                    let tokens: Vec<Prediction> = rows
                        .chunks_exact(nl)
                        .map(|r| predict_row(hp.task, &hp.labels, r))
                        .collect();
                    let mut p = predict_row(hp.task, &hp.labels, &rows[..nl]);
                    p.tokens = tokens;
                    res.push(p);
                } else {
                    res.push(predict_row(
                        hp.task,
                        &hp.labels,
                        &ho.logits[b * nl..(b + 1) * nl],
                    ));
                }
            }
        }
        Ok(res)
    }
}

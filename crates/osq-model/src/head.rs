//! Task heads of fine-tuned checkpoints (`*ForSequenceClassification`, `*ForTokenClassification`):
//! which tensors each family names them by, how the task and labels are read from `config.json`,
//! and their FP32 definition. The quantized form (integer up to the logits) is `quant::head`.
//!
//! Every sequence head reads the first token's final hidden state (`[CLS]` / `<s>`), runs one
//! dense layer with an activation (BERT's pooler + tanh; RoBERTa / XLM-R / MPNet
//! `classifier.dense` + tanh; ELECTRA `classifier.dense` + GELU; DistilBERT `pre_classifier` +
//! ReLU) and the output Linear. Token heads are one Linear on every token.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::config::Family;
use crate::error::{ModelError, Result};
use crate::weights::Linear;

/// What the head predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// One label per sequence (softmax over the logits).
    SingleLabel,
    /// Any number of labels per sequence (sigmoid per logit).
    MultiLabel,
    /// One real value per sequence (`num_labels` = 1: the logit itself).
    Regression,
    /// One label per token (softmax per token).
    Token,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::SingleLabel => "single_label_classification",
            Task::MultiLabel => "multi_label_classification",
            Task::Regression => "regression",
            Task::Token => "token_classification",
        }
    }
    pub fn parse(s: &str) -> Option<Task> {
        [
            Task::SingleLabel,
            Task::MultiLabel,
            Task::Regression,
            Task::Token,
        ]
        .into_iter()
        .find(|t| t.name() == s)
    }
    /// Whether the head reads the first token only.
    pub fn per_sequence(self) -> bool {
        self != Task::Token
    }
}

/// Activation between the head's dense layer and its output Linear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Tanh,
    /// Exact (erf) GELU.
    Gelu,
    Relu,
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "tanh",
            Activation::Gelu => "gelu",
            Activation::Relu => "relu",
        }
    }
    pub fn parse(s: &str) -> Option<Activation> {
        [Activation::Tanh, Activation::Gelu, Activation::Relu]
            .into_iter()
            .find(|a| a.name() == s)
    }
    /// The activation in f32, as PyTorch computes it.
    pub fn apply_f32(self, x: f32) -> f32 {
        match self {
            Activation::Tanh => x.tanh(),
            Activation::Gelu => crate::fp32::gelu(x),
            Activation::Relu => x.max(0.0),
        }
    }
    /// Which activation a family's sequence head uses.
    pub fn of_family(f: Family) -> Activation {
        match f {
            Family::Electra => Activation::Gelu,
            Family::DistilBert => Activation::Relu,
            _ => Activation::Tanh,
        }
    }
}

/// A fine-tuned task head.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskHead {
    pub task: Task,
    /// Sequence heads: the dense layer on the first token and its activation.
    pub dense: Option<(Linear, Activation)>,
    /// Output Linear `[num_labels, hidden]`.
    pub out: Linear,
    /// Label names by index (`id2label`; `LABEL_i` when the config has none).
    pub labels: Vec<String>,
}

impl TaskHead {
    pub fn num_labels(&self) -> usize {
        self.out.out_features
    }
}

/// The head-related fields of a Hugging Face `config.json`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeadMeta {
    pub architectures: Vec<String>,
    pub problem_type: Option<String>,
    pub id2label: Option<BTreeMap<usize, String>>,
}

impl HeadMeta {
    /// Reads `architectures`, `problem_type` and `id2label` of `config.json` (all optional).
    pub fn from_config_file(path: &Path) -> Result<HeadMeta> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| ModelError::Json {
            path: path.to_path_buf(),
            source: e,
        })?;
        let err = |field: &str, msg: String| ModelError::Config {
            path: path.to_path_buf(),
            field: field.into(),
            msg,
        };
        let mut m = HeadMeta::default();
        match v.get("architectures") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => {
                for (i, x) in a.iter().enumerate() {
                    m.architectures.push(
                        x.as_str()
                            .ok_or_else(|| {
                                err(&format!("architectures[{i}]"), "not a string".into())
                            })?
                            .to_string(),
                    );
                }
            }
            Some(_) => return Err(err("architectures", "not an array of strings".into())),
        }
        match v.get("problem_type") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => m.problem_type = Some(s.clone()),
            Some(_) => return Err(err("problem_type", "not a string".into())),
        }
        match v.get("id2label") {
            None | Some(Value::Null) => {}
            Some(Value::Object(o)) => {
                let mut map = BTreeMap::new();
                for (k, x) in o {
                    let field = format!("id2label.{k}");
                    let i: usize = k
                        .parse()
                        .map_err(|_| err(&field, "key is not a label index".into()))?;
                    let name = x
                        .as_str()
                        .ok_or_else(|| err(&field, "label is not a string".into()))?;
                    map.insert(i, name.to_string());
                }
                m.id2label = Some(map);
            }
            Some(_) => return Err(err("id2label", "not an object".into())),
        }
        Ok(m)
    }

    /// Whether the architecture names a token-classification model.
    pub fn is_token_classification(&self) -> bool {
        self.architectures
            .iter()
            .any(|a| a.ends_with("ForTokenClassification"))
    }

    /// The task of a head with `num_labels` outputs: `problem_type` when set, else the
    /// architecture (token classification), else regression for one output and single-label
    /// classification otherwise (as transformers decides at inference). `config` names the file.
    pub fn task(&self, num_labels: usize, token: bool, config: &Path) -> Result<Task> {
        let err = |msg: String| ModelError::Config {
            path: config.to_path_buf(),
            field: "problem_type".into(),
            msg,
        };
        if token {
            return Ok(Task::Token);
        }
        let t = match &self.problem_type {
            Some(p) => Task::parse(p).filter(|t| *t != Task::Token).ok_or_else(|| {
                err(format!(
                    "\"{p}\" is not one of single_label_classification, multi_label_classification, regression"
                ))
            })?,
            None if num_labels == 1 => Task::Regression,
            None => Task::SingleLabel,
        };
        if t == Task::Regression && num_labels != 1 {
            return Err(err(format!(
                "regression needs one output, the head has {num_labels}"
            )));
        }
        Ok(t)
    }

    /// Label names for `n` outputs: `id2label` (indices 0..n exactly) or `LABEL_i`.
    pub fn labels(&self, n: usize, config: &Path) -> Result<Vec<String>> {
        match &self.id2label {
            Some(m) if !(m.len() == 2 && n != 2 && m.values().all(|l| l.starts_with("LABEL_"))) => {
                if m.len() != n || m.keys().enumerate().any(|(i, &k)| i != k) {
                    return Err(ModelError::Config {
                        path: config.to_path_buf(),
                        field: "id2label".into(),
                        msg: format!(
                            "has indices {:?}, the head has {n} outputs (0..{n} expected)",
                            m.keys().collect::<Vec<_>>()
                        ),
                    });
                }
                Ok(m.values().cloned().collect())
            }
            // transformers writes the default {0: LABEL_0, 1: LABEL_1} into every config
            _ => Ok((0..n).map(|i| format!("LABEL_{i}")).collect()),
        }
    }
}

/// Names of a family's sequence-head tensors: (dense prefix, output prefix).
pub fn sequence_head_names(f: Family) -> (&'static str, &'static str) {
    match f {
        Family::Bert => ("pooler.dense", "classifier"),
        Family::DistilBert => ("pre_classifier", "classifier"),
        _ => ("classifier.dense", "classifier.out_proj"),
    }
}

/// Logits of the head from final hidden states `hidden` `[batch·seq, h]` (padded rows
/// included): sequence heads `[batch, labels]` from each row's first token; token heads
/// `[batch·seq, labels]` (padding rows computed too, ignore them). `hook` sees the output
/// Linear's input (`[rows, h]`) before it runs.
pub fn logits_f32(
    head: &TaskHead,
    hidden: &[f32],
    batch: usize,
    seq: usize,
    h: usize,
    exec: &crate::ThreadPool,
    hook: &mut impl FnMut(&mut [f32]),
) -> Vec<f32> {
    let (mut x, rows) = match &head.dense {
        Some((dense, act)) => {
            let cls = crate::fp32::cls_rows_of(hidden, batch, seq, h);
            let mut d = vec![0.0f32; batch * h];
            crate::fp32::linear(exec, &cls, batch, dense, &mut d);
            d.iter_mut().for_each(|v| *v = act.apply_f32(*v));
            (d, batch)
        }
        None => (hidden[..batch * seq * h].to_vec(), batch * seq),
    };
    hook(&mut x);
    let mut logits = vec![0.0f32; rows * head.num_labels()];
    crate::fp32::linear(exec, &x, rows, &head.out, &mut logits);
    logits
}

/// Scores of one row of logits: softmax (single-label, token), sigmoid (multi-label), the
/// value itself (regression). Computed in f64, returned as f32.
pub fn scores(task: Task, logits: &[f32]) -> Vec<f32> {
    match task {
        Task::Regression => logits.to_vec(),
        Task::MultiLabel => logits
            .iter()
            .map(|&z| (1.0 / (1.0 + (-(z as f64)).exp())) as f32)
            .collect(),
        Task::SingleLabel | Task::Token => {
            let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
            let e: Vec<f64> = logits.iter().map(|&z| (z as f64 - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|v| (v / s) as f32).collect()
        }
    }
}

/// Index of the largest logit (first on ties).
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_follow_the_task() {
        let s = scores(Task::SingleLabel, &[0.0, 0.0]);
        assert_eq!(s, vec![0.5, 0.5]);
        let s = scores(Task::MultiLabel, &[0.0, 100.0]);
        assert_eq!(s, vec![0.5, 1.0]);
        assert_eq!(scores(Task::Regression, &[-2.5]), vec![-2.5]);
        assert_eq!(argmax(&[0.1, 0.3, 0.3]), 1);
    }

    #[test]
    fn task_and_labels_from_meta() {
        let p = Path::new("config.json");
        let mut m = HeadMeta::default();
        assert_eq!(m.task(1, false, p).unwrap(), Task::Regression);
        assert_eq!(m.task(3, false, p).unwrap(), Task::SingleLabel);
        assert_eq!(m.task(3, true, p).unwrap(), Task::Token);
        m.problem_type = Some("multi_label_classification".into());
        assert_eq!(m.task(3, false, p).unwrap(), Task::MultiLabel);
        m.problem_type = Some("regression".into());
        assert!(m
            .task(3, false, p)
            .unwrap_err()
            .to_string()
            .contains("one output"));
        m.problem_type = Some("ranking".into());
        assert!(m
            .task(3, false, p)
            .unwrap_err()
            .to_string()
            .contains("ranking"));
        // transformers' default two labels are not a mismatch for a 3-way head
        let default: BTreeMap<usize, String> =
            [(0, "LABEL_0".into()), (1, "LABEL_1".into())].into();
        m.id2label = Some(default);
        assert_eq!(
            m.labels(3, p).unwrap(),
            vec!["LABEL_0", "LABEL_1", "LABEL_2"]
        );
        m.id2label = Some([(0, "neg".into()), (2, "pos".into())].into());
        assert!(m.labels(2, p).unwrap_err().to_string().contains("id2label"));
        m.id2label = Some([(0, "neg".into()), (1, "pos".into())].into());
        assert_eq!(m.labels(2, p).unwrap(), vec!["neg", "pos"]);
    }
}

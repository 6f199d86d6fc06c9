#!/usr/bin/env python3
"""Golden fixtures of the BERT family, made by Hugging Face transformers itself (the oracle).

For each architecture this builds a tiny randomly initialised model locally
(`Config(...)` -> `Model(config)` -> `save_pretrained`, nothing from a hub), a WordPiece
`tokenizer.json` with the family's special tokens, and the model's outputs on fixed token ids:
`expected.safetensors` holds `hidden` (the last hidden state of every real token, the sequences
one after another), `ids`, `type_ids` and `lengths`; MPNet's fixture also holds `buckets`, torch's
relative position buckets of the distances -600..600.

Task heads: for every family, `tests/fixtures/heads/<family>-<task>/` holds a tiny
`*ForSequenceClassification` (single-label with 3 named labels, multi-label with 4, regression) and
a `*ForTokenClassification` (5 labels), with `logits` on the same inputs (sequence heads one row
per sequence, token heads one row per real token).

The fixtures are committed (tests/fixtures/families/, ~60 KB each) so CI needs no torch; run this
script again when it changes:

    python3 -m venv /tmp/oracle && /tmp/oracle/bin/pip install -r tools/requirements-oracle.txt
    /tmp/oracle/bin/python tools/make_family_fixtures.py
"""

import argparse
import json
import os
import shutil

import numpy as np
import torch
from safetensors.numpy import save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

HIDDEN, LAYERS, HEADS, INTER, POSITIONS = 32, 2, 4, 64, 160
WORDS = (
    "the a an film movie good bad great dull plot actor acting story was is it this that and "
    "but not very so too of to in on with for by funny boring long short music scene scenes "
    "director cast role roles love hate best worst ever never fine well poor rich dark light "
    "slow fast sad happy end ending start beautiful ugly cheap smart silly ! . , ? ' -"
).split()
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
OUTLIER_CHANNEL, OUTLIER_GAMMA = 5, 8.0


def tokenizer_json(specials, cls, sep, unk, path):
    vocab = {t: i for i, t in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token=unk, max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
    )
    tok.save(path)
    return len(vocab)


def randomise(model, seed):
    """Weights far from HF's near-zero init, LayerNorm γ with one outlier channel (as in trained
    encoders, which Outlier Suppression targets; not in the last LayerNorm, where it would only
    multiply the float rounding of the output by 8), a large relative bias so it matters."""
    g = torch.Generator().manual_seed(seed)
    last = f"layer.{LAYERS - 1}."
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name:
                if name.endswith("weight"):
                    p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
                    final = last in name and ("output.LayerNorm" in name or "output_layer_norm" in name)
                    if not final:
                        p[OUTLIER_CHANNEL] *= OUTLIER_GAMMA
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "relative_attention_bias" in name:
                p.copy_(1.5 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))


def families(vocab):
    from transformers import (BertConfig, BertModel, DistilBertConfig, DistilBertModel,
                              ElectraConfig, ElectraModel, MPNetConfig, MPNetModel, RobertaConfig,
                              RobertaModel, XLMRobertaConfig, XLMRobertaModel)
    common = dict(vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                  num_attention_heads=HEADS, intermediate_size=INTER, hidden_act="gelu",
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    yield "bert", BERT_SPECIALS, BertModel(BertConfig(
        **common, max_position_embeddings=POSITIONS, type_vocab_size=2, pad_token_id=0),
        add_pooling_layer=False)
    yield "electra", BERT_SPECIALS, ElectraModel(ElectraConfig(
        **common, embedding_size=HIDDEN, max_position_embeddings=POSITIONS, type_vocab_size=2,
        pad_token_id=0))
    yield "roberta", ROBERTA_SPECIALS, RobertaModel(RobertaConfig(
        **common, max_position_embeddings=POSITIONS + 2, type_vocab_size=1, pad_token_id=1,
        bos_token_id=0, eos_token_id=2), add_pooling_layer=False)
    yield "xlm-roberta", ROBERTA_SPECIALS, XLMRobertaModel(XLMRobertaConfig(
        **common, max_position_embeddings=POSITIONS + 2, type_vocab_size=1, pad_token_id=1,
        bos_token_id=0, eos_token_id=2), add_pooling_layer=False)
    yield "distilbert", BERT_SPECIALS, DistilBertModel(DistilBertConfig(
        vocab_size=vocab, dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=INTER,
        max_position_embeddings=POSITIONS, activation="gelu", dropout=0.0,
        attention_dropout=0.0, pad_token_id=0))
    yield "mpnet", ROBERTA_SPECIALS, MPNetModel(MPNetConfig(
        **common, max_position_embeddings=POSITIONS + 2, relative_attention_num_buckets=32,
        pad_token_id=1, bos_token_id=0, eos_token_id=2), add_pooling_layer=False)


HEAD_TASKS = {
    # task: (num_labels, problem_type, class)
    "single": (3, "single_label_classification", "ForSequenceClassification"),
    "multi": (4, "multi_label_classification", "ForSequenceClassification"),
    "regression": (1, "regression", "ForSequenceClassification"),
    "token": (5, None, "ForTokenClassification"),
}
CLASS_PREFIX = {"bert": "Bert", "electra": "Electra", "roberta": "Roberta",
                "xlm-roberta": "XLMRoberta", "distilbert": "DistilBert", "mpnet": "MPNet"}


def head_model(name, base, task):
    """The family's task model on `base`'s config, randomly initialised (encoder included)."""
    import transformers
    n, problem, cls = HEAD_TASKS[task]
    config = base.config.__class__.from_dict(base.config.to_dict())
    config.num_labels = n
    config.problem_type = problem
    if task == "single":
        config.id2label = {0: "negative", 1: "neutral", 2: "positive"}
        config.label2id = {v: k for k, v in config.id2label.items()}
    if name == "distilbert":
        config.seq_classif_dropout = 0.0
    config.classifier_dropout = 0.0
    return getattr(transformers, CLASS_PREFIX[name] + cls)(config)


def inputs(specials, vocab, seed, with_types):
    """Sequences of 1, 3, 17, 40, 70 and 150 tokens (special tokens first and last; MPNet's
    buckets change at distances 8, 16, 32, 64), some containing the [UNK] id."""
    rng = np.random.default_rng(seed)
    cls, sep = (2, 3) if specials is BERT_SPECIALS else (0, 2)
    seqs, types = [], []
    for n in (1, 3, 17, 40, 70, 150):
        if n == 1:
            ids = [cls]
        else:
            body = rng.integers(len(specials), vocab, size=n - 2).tolist()
            if n > 10:
                body[3] = 3 if specials is ROBERTA_SPECIALS else 1  # the unknown token
            ids = [cls] + body + [sep]
        tt = [0] * n
        if with_types and n > 4:
            tt = [0] * (n // 2) + [1] * (n - n // 2)
        seqs.append(ids)
        types.append(tt)
    return seqs, types


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "families"))
    ap.add_argument("--heads", default=os.path.join(here, "..", "tests", "fixtures", "heads"))
    args = ap.parse_args()
    torch.manual_seed(0)
    vocab_b = len(BERT_SPECIALS) + len(WORDS)
    for seed, (name, specials, model) in enumerate(families(vocab_b)):
        d = os.path.join(args.out, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        randomise(model, 1000 + seed)
        model.eval()
        model.save_pretrained(d, safe_serialization=True)  # float32
        if specials is BERT_SPECIALS:
            tokenizer_json(specials, "[CLS]", "[SEP]", "[UNK]", os.path.join(d, "tokenizer.json"))
        else:
            tokenizer_json(specials, "<s>", "</s>", "<unk>", os.path.join(d, "tokenizer.json"))
        with_types = name in ("bert", "electra")
        seqs, types = inputs(specials, vocab_b, seed, with_types)
        pad = model.config.pad_token_id
        longest = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), longest), pad, dtype=torch.long)
        tts = torch.zeros((len(seqs), longest), dtype=torch.long)
        mask = torch.zeros((len(seqs), longest), dtype=torch.long)
        for i, (s, t) in enumerate(zip(seqs, types)):
            ids[i, : len(s)] = torch.tensor(s)
            tts[i, : len(t)] = torch.tensor(t)
            mask[i, : len(s)] = 1
        kw = dict(input_ids=ids, attention_mask=mask)
        if with_types:
            kw["token_type_ids"] = tts
        with torch.no_grad():
            # in float64: the fixture is the function itself, not one f32 evaluation order
            hidden = model.double()(**kw).last_hidden_state.numpy()
            model.float()
        rows = np.concatenate([hidden[i, : len(s)] for i, s in enumerate(seqs)])
        for task_seed, task in enumerate(HEAD_TASKS):
            write_head(args.heads, name, specials, model, task, 2000 + 10 * seed + task_seed,
                       seqs, types, kw, d)
        out = {
            "hidden": rows.astype(np.float32),
            "ids": np.array(sum(seqs, []), dtype=np.int64),
            "type_ids": np.array(sum(types, []), dtype=np.int64),
            "lengths": np.array([len(s) for s in seqs], dtype=np.int64),
        }
        if name == "mpnet":
            rel = torch.arange(-600, 601)
            out["buckets"] = model.encoder.relative_position_bucket(rel, num_buckets=32).numpy()
        save_file(out, os.path.join(d, "expected.safetensors"))
        with open(os.path.join(d, "ORACLE.json"), "w") as f:
            import transformers
            json.dump({"transformers": transformers.__version__, "torch": torch.__version__,
                       "model": type(model).__name__, "seed": 1000 + seed}, f, indent=1)
            f.write("\n")
        print(f"{name:12s} {type(model).__name__:18s} {rows.shape[0]} tokens -> {d}")


def write_head(out, name, specials, base, task, seed, seqs, types, kw, base_dir):
    d = os.path.join(out, f"{name}-{task}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    model = head_model(name, base, task)
    randomise(model, seed)
    model.eval()
    model.save_pretrained(d, safe_serialization=True)
    shutil.copy(os.path.join(base_dir, "tokenizer.json"), os.path.join(d, "tokenizer.json"))
    with torch.no_grad():
        logits = model.double()(**kw).logits.numpy()
    if task == "token":
        logits = np.concatenate([logits[i, : len(s)] for i, s in enumerate(seqs)])
    save_file({
        "logits": logits.astype(np.float32),
        "logits_f64": logits.astype(np.float64),
        "ids": np.array(sum(seqs, []), dtype=np.int64),
        "type_ids": np.array(sum(types, []), dtype=np.int64),
        "lengths": np.array([len(s) for s in seqs], dtype=np.int64),
    }, os.path.join(d, "expected.safetensors"))
    with open(os.path.join(d, "ORACLE.json"), "w") as f:
        import transformers
        json.dump({"transformers": transformers.__version__, "torch": torch.__version__,
                   "model": type(model).__name__, "seed": seed}, f, indent=1)
        f.write("\n")
    print(f"  {name}-{task}: {type(model).__name__} logits {logits.shape} -> {d}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""ONNX Runtime baseline for osq on the same weights (BERT; MPNet with its relative position bias).

Builds a plain BERT-encoder ONNX graph (opset 17) from models/<name>/model.safetensors + config.json
with numpy + onnx.helper, checks it against a float64 numpy forward (max abs <= 1e-4), quantizes it with
ONNX Runtime's own tools and times the three models with identical inputs:
  ort-fp32          the graph as built
  ort-int8-dynamic  quantize_dynamic: int8 per-channel weights, uint8 activations quantized at run time
  ort-int8-qdq      quantize_static, QuantFormat.QDQ: int8 per-channel weights, activations uint8 on x86-64
                    (int8 elsewhere), MinMax calibration on data/movie/calib.txt (else a built-in list),
                    MatMul ops by default (--qdq-op-types all = ORT's defaults)

  python3 tools/onnx_bench.py --model models/all-MiniLM-L6-v2 --out out/onnx --batch 1 --seq 128 \
      --threads 1 2 --runs 200 --json out/onnx/ort.json [--check-outputs]

Built models are cached in --out (model-fp32.onnx, model-int8-dynamic.onnx, model-int8-qdq.onnx, each
with a .json of the settings it was built with; a settings change or --rebuild regenerates them). The JSON is a list of records
  {engine, batch, seq, threads, p50_ms, p90_ms, p99_ms, mean_ms, throughput_seq_per_s, runs}.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPSET = 17
GRAPH_VERSION = 3  # bump when build_onnx changes, to invalidate cached .onnx files
MASK_NEG = -10000.0  # additive attention-mask value for padding keys (original BERT)

# Fallback sentences when data/movie/*.txt is absent (tools/fetch_data.py writes it).
BUILTIN_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street corner.",
    "The weather today is sunny with a light breeze from the west.",
    "She finished the marathon in just under four hours.",
    "Quantum computers exploit superposition and entanglement to solve certain problems faster.",
    "The restaurant was crowded, but the service was quick and friendly.",
    "I forgot my umbrella and got soaked on the way home.",
    "The committee will announce its decision next Tuesday.",
    "Children were laughing and chasing each other around the playground.",
    "This movie is a charming, funny and ultimately moving portrait of a family.",
    "The plot is thin, the acting is wooden, and the jokes fall flat.",
    "He spent the whole weekend repairing the old motorcycle in his garage.",
    "The stock market fell sharply after the central bank raised interest rates.",
    "Please remember to water the plants while I am away.",
    "The museum exhibits dinosaur fossils that are millions of years old.",
    "A cat is sleeping on the warm windowsill.",
    "The new phone has a faster processor and a better camera.",
    "Traffic on the highway was backed up for miles because of an accident.",
    "The soup needs a little more salt and some fresh pepper.",
    "Our flight was delayed by three hours due to a storm.",
    "The orchestra played Beethoven's ninth symphony to a standing ovation.",
    "Regular exercise improves both physical and mental health.",
    "The library closes early on Sundays.",
    "Two dogs are running through a field of tall grass.",
    "The software update fixed several security vulnerabilities.",
    "I can't believe how boring and predictable this film turned out to be.",
    "The volcano erupted, sending a plume of ash high into the sky.",
    "She learned to speak Japanese while living in Osaka.",
    "The bridge was closed for repairs for most of the summer.",
    "A woman is slicing tomatoes in the kitchen.",
    "The team celebrated their championship victory with a parade.",
    "Scientists discovered a new species of frog in the rainforest.",
    "The coffee shop on the corner makes the best croissants in town.",
    "He apologized for being late to the meeting.",
    "The documentary offers a fascinating look at life in the deep ocean.",
    "Heavy snowfall forced the schools to close for two days.",
    "The painting was sold at auction for a record price.",
    "Electric cars are becoming more affordable every year.",
    "The children built a sandcastle on the beach.",
    "Her performance was the only bright spot in an otherwise dull production.",
    "The train departs from platform nine at half past seven.",
    "Farmers are worried about the lack of rain this season.",
    "A group of friends is hiking up a steep mountain trail.",
    "The hotel room had a stunning view of the harbor.",
    "The professor explained the theory with simple examples.",
    "An old man is feeding pigeons in the park.",
    "The company reported record profits in the last quarter.",
    "I really enjoyed the book, although the ending was a bit rushed.",
    "The firefighters rescued a kitten from the burning building.",
    "Learning a musical instrument takes patience and practice.",
    "The city plans to build a new subway line by 2030.",
    "A boy is riding a bicycle down a quiet country road.",
    "The lecture was so long that half the audience fell asleep.",
    "Fresh bread was cooling on the kitchen counter.",
    "The spacecraft entered orbit around Mars after a seven-month journey.",
    "The meeting has been moved to the large conference room.",
    "The kids were thrilled when it started to snow.",
    "This is one of the most beautifully shot films of the decade.",
    "The battery lasts all day with moderate use.",
    "A chef is preparing sushi at the counter.",
    "The river flooded the low-lying fields after days of rain.",
    "Nobody expected the underdog team to win the tournament.",
    "The garden is full of roses and lavender in June.",
    "Despite a strong cast, the film never finds its footing.",
]


def log(*a):
    print("onnx_bench:", *a, flush=True)


# ----------------------------------------------------------------------------- model + tokenizer

def load_model(model_dir):
    from safetensors.numpy import load_file

    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    w = load_file(os.path.join(model_dir, "model.safetensors"))
    # Some checkpoints prefix every tensor with "bert.".
    w = {k[5:] if k.startswith("bert.") else k: v for k, v in w.items()}
    if cfg.get("model_type") == "mpnet":
        cfg, w = mpnet_as_bert(cfg, w)
    return cfg, w


# MPNet's relative position bias reaches this far (Hugging Face's MPNetEncoder).
MPNET_MAX_DISTANCE = 128


def mpnet_as_bert(cfg, w):
    """MPNet in the BERT graph's names: its tensors renamed, one all-zero token type, positions
    from `pad_token_id + 1` (every benched row is all real tokens), and the relative position
    bias kept as `encoder.relative_attention_bias.weight` ([buckets, heads], added to the scaled
    scores of every layer)."""
    w = {k[6:] if k.startswith("mpnet.") else k: v for k, v in w.items()}
    ren = {"attention.attn.q.": "attention.self.query.", "attention.attn.k.": "attention.self.key.",
           "attention.attn.v.": "attention.self.value.", "attention.attn.o.": "attention.output.dense.",
           "attention.LayerNorm.": "attention.output.LayerNorm."}
    out = {}
    for k, v in w.items():
        for a, b in ren.items():
            if a in k:
                k = k.replace(a, b)
                break
        out[k] = v
    h = cfg["hidden_size"]
    out["embeddings.token_type_embeddings.weight"] = np.zeros((1, h), np.float32)
    cfg = {**cfg, "pos_offset": cfg.get("pad_token_id", 1) + 1,
           "relative_buckets": cfg.get("relative_attention_num_buckets", 32)}
    return cfg, out


def relative_bucket(rel, num_buckets):
    """Hugging Face's MPNet `relative_position_bucket` (log evaluated in float32, as torch does)."""
    half = num_buckets // 2
    n = -rel
    ret = np.where(n < 0, half, 0)
    n = np.abs(n)
    max_exact = half // 2
    # n < max_exact takes the exact branch below: keep log's argument ≥ 1 there
    ratio = np.maximum(n.astype(np.float32) / np.float32(max_exact), np.float32(1.0))
    denom = np.float32(math.log(MPNET_MAX_DISTANCE / max_exact))
    large = max_exact + ((np.log(ratio) / denom) * np.float32(half - max_exact)).astype(np.int64)
    large = np.minimum(large, half - 1)
    return ret + np.where(n < max_exact, n, large)


def relative_bias(cfg, w, seq):
    """The additive bias [heads, seq, seq] of MPNet (None for other models)."""
    if "relative_buckets" not in cfg:
        return None
    pos = np.arange(seq)
    b = relative_bucket(pos[None, :] - pos[:, None], cfg["relative_buckets"])  # [query, key]
    table = w["encoder.relative_attention_bias.weight"]  # [buckets, heads]
    return np.ascontiguousarray(table[b].transpose(2, 0, 1)).astype(np.float32)


def load_tokenizer(model_dir, seq):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=seq)
    return tok


def encode(tok, sentences, seq=None):
    """Token ids/mask/type ids (int64). seq=None: pad to the longest; else pad/truncate to exactly seq."""
    encs = tok.encode_batch(list(sentences))
    n = seq if seq is not None else max(len(e.ids) for e in encs)
    ids = np.zeros((len(encs), n), np.int64)
    mask = np.zeros((len(encs), n), np.int64)
    for i, e in enumerate(encs):
        k = min(len(e.ids), n)
        ids[i, :k] = e.ids[:k]
        mask[i, :k] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def read_sentences(path, limit=None):
    with open(path, encoding="utf-8") as f:
        s = [line.rstrip("\n") for line in f if line.strip()]
    return s[:limit] if limit else s


def calib_sentences():
    p = os.path.join(ROOT, "data", "movie", "calib.txt")
    if os.path.isfile(p):
        return read_sentences(p), p
    return list(BUILTIN_SENTENCES), "built-in list"


def eval_sentences():
    for name in ("eval.txt", "calib.txt"):
        p = os.path.join(ROOT, "data", "movie", name)
        if os.path.isfile(p):
            return read_sentences(p), p
    return list(BUILTIN_SENTENCES), "built-in list"


# ----------------------------------------------------------------------------- numpy reference

def np_layernorm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def np_gelu(x):
    from math import erf

    verf = np.vectorize(erf, otypes=[np.float64])
    return 0.5 * x * (1.0 + verf(x / math.sqrt(2.0)))


def numpy_forward(cfg, w, feeds):
    """float64 BERT encoder forward; returns last_hidden_state [B, S, H]."""
    W = {k: v.astype(np.float64) for k, v in w.items() if v.dtype != np.int64}
    eps = cfg["layer_norm_eps"]
    H, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    dh = H // nh
    ids, mask, tt = feeds["input_ids"], feeds["attention_mask"], feeds["token_type_ids"]
    B, S = ids.shape
    off = cfg.get("pos_offset", 0)
    x = (W["embeddings.word_embeddings.weight"][ids] + W["embeddings.position_embeddings.weight"][off:off + S][None]
         + W["embeddings.token_type_embeddings.weight"][tt])
    rel = relative_bias(cfg, w, S)
    rel = 0.0 if rel is None else rel.astype(np.float64)[None]
    x = np_layernorm(x, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"], eps)
    add_mask = (1.0 - mask.astype(np.float64))[:, None, None, :] * MASK_NEG
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def lin(t, name):
            return t @ W[p + name + ".weight"].T + W[p + name + ".bias"]

        def heads(t):
            return t.reshape(B, S, nh, dh).transpose(0, 2, 1, 3)

        q, k, v = (heads(lin(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh) + rel + add_mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(0, 2, 1, 3).reshape(B, S, H)
        x = np_layernorm(lin(ctx, "attention.output.dense") + x, W[p + "attention.output.LayerNorm.weight"],
                         W[p + "attention.output.LayerNorm.bias"], eps)
        h = np_gelu(lin(x, "intermediate.dense"))
        x = np_layernorm(lin(h, "output.dense") + x, W[p + "output.LayerNorm.weight"],
                         W[p + "output.LayerNorm.bias"], eps)
    return x


# ----------------------------------------------------------------------------- ONNX graph

def build_onnx(cfg, w, path):
    H, nh, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    dh = H // nh
    eps = float(cfg["layer_norm_eps"])
    if cfg.get("hidden_act", "gelu") != "gelu" or cfg.get("position_embedding_type", "absolute") != "absolute":
        raise SystemExit("onnx_bench: only gelu + absolute position embeddings are supported")
    inits, nodes = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(op, ins, out, **attrs):
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    const("word_emb", f32(w["embeddings.word_embeddings.weight"]))
    const("pos_emb", f32(w["embeddings.position_embeddings.weight"]))
    const("type_emb", f32(w["embeddings.token_type_embeddings.weight"]))
    const("emb_ln_g", f32(w["embeddings.LayerNorm.weight"]))
    const("emb_ln_b", f32(w["embeddings.LayerNorm.bias"]))
    const("c_zero_1d", np.array([0], np.int64))
    off = cfg.get("pos_offset", 0)
    if off:
        const("c_pos_off", np.array([off], np.int64))
    rel = relative_bias(cfg, w, cfg["max_position_embeddings"] - off)
    if rel is not None:
        const("rel_bias", rel)  # [heads, max_len, max_len], sliced to [heads, S, S]
        const("c_axes_12", np.array([1, 2], np.int64))
        const("c_zero_2d", np.array([0, 0], np.int64))
    const("c_one_f", np.array(1.0, np.float32))
    const("c_half_f", np.array(0.5, np.float32))
    const("c_mask_neg", np.array(MASK_NEG, np.float32))
    const("c_sqrt2", np.array(math.sqrt(2.0), np.float32))
    const("c_sqrt_dh", np.array(math.sqrt(dh), np.float32))
    const("c_axis_1", np.array([1], np.int64))
    const("c_axis_2", np.array([2], np.int64))
    const("c_heads_shape", np.array([0, 0, nh, dh], np.int64))
    const("c_hidden_shape", np.array([0, 0, H], np.int64))

    # Embeddings: word + position (0..S-1) + token type, then LayerNorm.
    # Position embeddings = pos_emb[0:S] as a Slice (1-D starts/ends; ORT's optimizer rewrites a
    # Gather over Range(0, S) into a Slice with scalar bounds, which its Slice kernel then rejects).
    node("Shape", ["input_ids"], "seq_len", start=1, end=2)
    node("Gather", ["word_emb", "input_ids"], "emb_word", axis=0)
    if off:
        node("Add", ["seq_len", "c_pos_off"], "pos_end")
        node("Slice", ["pos_emb", "c_pos_off", "pos_end", "c_zero_1d"], "emb_pos")
    else:  # the graph GRAPH_VERSION 3 cached for BERT
        node("Slice", ["pos_emb", "c_zero_1d", "seq_len", "c_zero_1d"], "emb_pos")
    if rel is not None:
        node("Concat", ["seq_len", "seq_len"], "seq_len_2d", axis=0)
        node("Slice", ["rel_bias", "c_zero_2d", "seq_len_2d", "c_axes_12"], "rel_bias_s")
    node("Gather", ["type_emb", "token_type_ids"], "emb_type", axis=0)
    node("Add", ["emb_word", "emb_pos"], "emb_sum0")
    node("Add", ["emb_sum0", "emb_type"], "emb_sum")
    x = node("LayerNormalization", ["emb_sum", "emb_ln_g", "emb_ln_b"], "emb_out", axis=-1, epsilon=eps)

    # Additive mask [B, 1, 1, S]: (1 - mask) * -10000, in the node order a PyTorch export of BERT
    # has (Unsqueeze, Unsqueeze, Cast, Sub, Mul), which onnxruntime.transformers' attention fusion
    # recognises (tools/peers.py).
    node("Unsqueeze", ["attention_mask", "c_axis_1"], "mask_u1")
    node("Unsqueeze", ["mask_u1", "c_axis_2"], "mask_u2")
    node("Cast", ["mask_u2"], "mask_f", to=TensorProto.FLOAT)
    node("Sub", ["c_one_f", "mask_f"], "mask_inv")
    node("Mul", ["mask_inv", "c_mask_neg"], "mask_add")

    for i in range(L):
        p = f"encoder.layer.{i}."
        t = f"l{i}_"

        def linear(inp, name, tag):
            const(t + tag + "_w", f32(w[p + name + ".weight"]).T)  # [in, out]
            const(t + tag + "_b", f32(w[p + name + ".bias"]))
            mm = node("MatMul", [inp, t + tag + "_w"], t + tag + "_mm")
            return node("Add", [mm, t + tag + "_b"], t + tag)

        q = linear(x, "attention.self.query", "q")
        k = linear(x, "attention.self.key", "k")
        v = linear(x, "attention.self.value", "v")
        node("Reshape", [q, "c_heads_shape"], t + "q_r")
        node("Reshape", [k, "c_heads_shape"], t + "k_r")
        node("Reshape", [v, "c_heads_shape"], t + "v_r")
        node("Transpose", [t + "q_r"], t + "q_h", perm=[0, 2, 1, 3])  # [B, nh, S, dh]
        node("Transpose", [t + "k_r"], t + "k_t", perm=[0, 2, 3, 1])  # [B, nh, dh, S]
        node("Transpose", [t + "v_r"], t + "v_h", perm=[0, 2, 1, 3])  # [B, nh, S, dh]
        node("MatMul", [t + "q_h", t + "k_t"], t + "scores")
        node("Div", [t + "scores", "c_sqrt_dh"], t + "scores_s")  # Div, as exported from PyTorch
        scores = t + "scores_s"
        if rel is not None:
            scores = node("Add", [scores, "rel_bias_s"], t + "scores_r")
        node("Add", [scores, "mask_add"], t + "scores_m")
        node("Softmax", [t + "scores_m"], t + "probs", axis=-1)
        node("MatMul", [t + "probs", t + "v_h"], t + "ctx_h")
        node("Transpose", [t + "ctx_h"], t + "ctx_t", perm=[0, 2, 1, 3])
        node("Reshape", [t + "ctx_t", "c_hidden_shape"], t + "ctx")
        ao = linear(t + "ctx", "attention.output.dense", "ao")
        node("Add", [ao, x], t + "res1")
        const(t + "ln1_g", f32(w[p + "attention.output.LayerNorm.weight"]))
        const(t + "ln1_b", f32(w[p + "attention.output.LayerNorm.bias"]))
        x = node("LayerNormalization", [t + "res1", t + "ln1_g", t + "ln1_b"], t + "ln1", axis=-1, epsilon=eps)
        h = linear(x, "intermediate.dense", "ff1")
        # Exact GELU: 0.5 * h * (1 + erf(h / sqrt(2))), as PyTorch exports it (Div, Erf, Add, Mul, Mul).
        node("Div", [h, "c_sqrt2"], t + "gelu_d")
        node("Erf", [t + "gelu_d"], t + "gelu_erf")
        node("Add", [t + "gelu_erf", "c_one_f"], t + "gelu_p1")
        node("Mul", [h, t + "gelu_p1"], t + "gelu_m")
        g = node("Mul", [t + "gelu_m", "c_half_f"], t + "gelu")
        o = linear(g, "output.dense", "ff2")
        node("Add", [o, x], t + "res2")
        const(t + "ln2_g", f32(w[p + "output.LayerNorm.weight"]))
        const(t + "ln2_b", f32(w[p + "output.LayerNorm.bias"]))
        x = node("LayerNormalization", [t + "res2", t + "ln2_g", t + "ln2_b"], t + "ln2", axis=-1, epsilon=eps)
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))

    dims = ["batch", "seq"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, dims)
              for n in ("input_ids", "attention_mask", "token_type_ids")]
    outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", H])]
    graph = helper.make_graph(nodes, "bert_encoder", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="osq-onnx_bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    tmp = path + ".part"
    onnx.save(model, tmp)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- ORT helpers

def session(path, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])


def feeds_for(sess, feeds):
    names = {i.name for i in sess.get_inputs()}
    return {k: v for k, v in feeds.items() if k in names}


def mean_pool(h, mask):
    m = mask[..., None].astype(np.float64)
    return (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)


def cached(path, settings, rebuild):
    """True if path exists and was built with the same settings (stored next to it as path + '.json')."""
    meta = path + ".json"
    if rebuild or not os.path.isfile(path) or not os.path.isfile(meta):
        return False
    with open(meta) as f:
        return json.load(f) == settings


def mark_built(path, settings):
    with open(path + ".json", "w") as f:
        json.dump(settings, f, indent=1, sort_keys=True)


def quantize_models(fp32_path, out_dir, tok, args):
    import platform

    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
    pre = os.path.join(out_dir, "model-fp32-pre.onnx")
    dyn = os.path.join(out_dir, "model-int8-dynamic.onnx")
    qdq = os.path.join(out_dir, "model-int8-qdq.onnx")
    base = {"ort": ort.__version__, "fp32_mtime_ns": os.stat(fp32_path).st_mtime_ns}

    if not cached(pre, base, args.rebuild):
        # ORT's recommended pre-processing: symbolic shape inference + basic graph optimisation.
        # auto_merge: the Slice of the position table yields a fresh symbolic dim that equals "seq".
        quant_pre_process(fp32_path, pre + ".part.onnx", auto_merge=True)
        os.replace(pre + ".part.onnx", pre)
        mark_built(pre, base)

    # Dynamic: int8 weights (QInt8), activations quantized to uint8 at run time (U8S8 MatMulInteger /
    # DynamicQuantizeMatMul), ORT's default and its fast path on x86-64 (no reduce_range needed with VNNI).
    dyn_cfg = {**base, "weight_type": "QInt8", "per_channel": not args.dynamic_per_tensor, "reduce_range": False}
    if not cached(dyn, dyn_cfg, args.rebuild):
        t0 = time.time()
        quantize_dynamic(pre, dyn + ".part.onnx", weight_type=QuantType.QInt8,
                         per_channel=dyn_cfg["per_channel"], reduce_range=False)
        os.replace(dyn + ".part.onnx", dyn)
        mark_built(dyn, dyn_cfg)
        log(f"quantize_dynamic (U8S8, per_channel={dyn_cfg['per_channel']}) -> {dyn} ({time.time() - t0:.1f}s)")

    # Static QDQ: per-channel symmetric int8 weights; activations uint8 on x86-64 (U8S8 is MLAS's
    # native VNNI/AVX2 path; S8S8 QDQ MatMul measured ~2-4x slower here) and int8 elsewhere (S8S8, ORT's
    # default). Op types: MatMul by default (every linear layer plus Q.K^T and P.V); "all" = ORT's
    # QDQ registry defaults (also Gather, LayerNormalization, Reshape, Transpose; much less accurate).
    act = args.qdq_activation
    if act == "auto":
        act = "uint8" if x86 else "int8"
    ops = None if args.qdq_op_types == ["all"] else args.qdq_op_types
    sents, src = calib_sentences()
    qdq_cfg = {**base, "activation": act, "weight_type": "QInt8", "per_channel": True, "op_types": ops,
               "calibrate": "MinMax", "calib_source": src, "calib_n": len(sents)}
    if not cached(qdq, qdq_cfg, args.rebuild):

        class Reader(CalibrationDataReader):
            # One unpadded sentence per batch, so padding rows do not widen the calibrated ranges.
            def __init__(self):
                self.it = iter([encode(tok, [s]) for s in sents])

            def get_next(self):
                return next(self.it, None)

        t0 = time.time()
        quantize_static(pre, qdq + ".part.onnx", Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=ops, per_channel=True, reduce_range=False,
                        activation_type=QuantType.QUInt8 if act == "uint8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        os.replace(qdq + ".part.onnx", qdq)
        mark_built(qdq, qdq_cfg)
        log(f"quantize_static (QDQ, activations {act}, int8 per-channel weights, ops {ops or 'ORT defaults'}, "
            f"MinMax over {len(sents)} sentences from {src}) -> {qdq} ({time.time() - t0:.1f}s)")
    return dyn, qdq


def bench(sess, feeds, warmup, runs):
    f = feeds_for(sess, feeds)
    for _ in range(warmup):
        sess.run(None, f)
    times = np.empty(runs, np.float64)
    for i in range(runs):
        t0 = time.perf_counter()
        sess.run(None, f)
        times[i] = time.perf_counter() - t0
    return times * 1e3


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description="ONNX Runtime fp32 / int8 baseline for osq")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--out", default=os.path.join(ROOT, "out", "onnx"))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--engines", nargs="+", default=["ort-fp32", "ort-int8-dynamic", "ort-int8-qdq"],
                    choices=["ort-fp32", "ort-int8-dynamic", "ort-int8-qdq"])
    ap.add_argument("--json", help="write the timing records here")
    ap.add_argument("--check-outputs", action="store_true",
                    help="print cosine similarity of mean-pooled int8 outputs vs fp32")
    ap.add_argument("--check-sentences", type=int, default=256, help="sentences for --check-outputs")
    ap.add_argument("--qdq-op-types", nargs="+", default=["MatMul"],
                    help="op types for quantize_static (default MatMul; 'all' = ORT's QDQ defaults)")
    ap.add_argument("--qdq-activation", choices=["auto", "uint8", "int8"], default="auto",
                    help="QDQ activation type (auto: uint8 on x86-64, int8 elsewhere)")
    ap.add_argument("--dynamic-per-tensor", action="store_true",
                    help="per-tensor weight scales for quantize_dynamic (default per-channel)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached .onnx files")
    args = ap.parse_args()

    import onnxruntime as ort

    log(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}, numpy {np.__version__}")
    os.makedirs(args.out, exist_ok=True)
    cfg, w = load_model(args.model)
    tok = load_tokenizer(args.model, max(args.seq, 8))

    fp32 = os.path.join(args.out, "model-fp32.onnx")
    st = os.stat(os.path.join(args.model, "model.safetensors"))
    fp32_cfg = {"graph": GRAPH_VERSION, "weights": os.path.abspath(args.model), "weights_size": st.st_size,
                "weights_mtime_ns": st.st_mtime_ns, "opset": OPSET}
    if not cached(fp32, fp32_cfg, args.rebuild):
        t0 = time.time()
        build_onnx(cfg, w, fp32)
        mark_built(fp32, fp32_cfg)
        log(f"built {fp32} ({os.path.getsize(fp32) / 2**20:.1f} MiB, {time.time() - t0:.1f}s)")

    # fp32 ONNX vs float64 numpy on a few real sentences (padded batch, so the mask path is exercised).
    sents, src = eval_sentences()
    vfeeds = encode(tok, sents[:4])
    ref = numpy_forward(cfg, w, vfeeds)
    got = session(fp32, 1).run(None, vfeeds)[0]
    m = vfeeds["attention_mask"].astype(bool)
    diff_all = float(np.abs(got - ref).max())
    diff_tok = float(np.abs(got - ref)[m].max())
    log(f"fp32 ONNX (ORT, optimisation ALL) vs float64 numpy on 4 sentences, shape {list(ref.shape)}: "
        f"max abs diff {diff_tok:.3g} over real tokens, {diff_all:.3g} over all positions "
        f"(|ref| max {np.abs(ref).max():.3g})")
    if diff_all > 1e-4:
        raise SystemExit("onnx_bench: fp32 ONNX graph does not match the numpy reference (> 1e-4)")

    paths = {"ort-fp32": fp32}
    if any(e != "ort-fp32" for e in args.engines) or args.check_outputs:
        paths["ort-int8-dynamic"], paths["ort-int8-qdq"] = quantize_models(fp32, args.out, tok, args)

    if args.check_outputs:
        cs = sents[:args.check_sentences]
        cf = encode(tok, cs)
        outs = {}
        for eng in ("ort-fp32", "ort-int8-dynamic", "ort-int8-qdq"):
            s = session(paths[eng], 2)
            outs[eng] = np.concatenate([mean_pool(s.run(None, feeds_for(s, {k: v[i:i + 32] for k, v in cf.items()}))[0],
                                                  cf["attention_mask"][i:i + 32])
                                        for i in range(0, len(cs), 32)])
        ref_pool = mean_pool(numpy_forward(cfg, w, {k: v[:8] for k, v in cf.items()}), cf["attention_mask"][:8])
        for eng in ("ort-fp32", "ort-int8-dynamic", "ort-int8-qdq"):
            a, b = outs[eng], outs["ort-fp32"]
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            log(f"check-outputs {eng:17s} vs ort-fp32, mean-pooled, {len(cs)} sentences from {src}: "
                f"cosine mean {cos.mean():.6f} min {cos.min():.6f} p5 {np.percentile(cos, 5):.6f}")
        a = outs["ort-fp32"][:8]
        cos = (a * ref_pool).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(ref_pool, axis=1))
        log(f"check-outputs ort-fp32 vs numpy float64 (8 sentences): cosine min {cos.min():.9f}")

    # Timing inputs: the first B real sentences, padded/truncated to exactly S tokens.
    bsents = (sents * (args.batch // max(len(sents), 1) + 1))[:args.batch]
    feeds = encode(tok, bsents, args.seq)
    log(f"timing: batch {args.batch}, seq {args.seq} (real tokens per row: "
        f"{feeds['attention_mask'].sum(1).tolist()[:8]}{'...' if args.batch > 8 else ''}), "
        f"warm-up {args.warmup}, runs {args.runs}, load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    records = []
    for threads in args.threads:
        # Engines are timed interleaved in rounds, so that load from other processes on a shared
        # machine spreads over all of them instead of skewing whichever ran at a busy moment.
        sessions = {eng: session(paths[eng], threads) for eng in args.engines}
        times = {eng: [] for eng in args.engines}
        for eng, sess in sessions.items():
            bench(sess, feeds, args.warmup, 0)
        rounds = max(1, min(10, args.runs))
        for r in range(rounds):
            n = args.runs // rounds + (1 if r < args.runs % rounds else 0)
            for eng, sess in sessions.items():
                times[eng].append(bench(sess, feeds, 2, n))
        for eng in args.engines:
            t = np.concatenate(times[eng])
            rec = {
                "engine": eng, "batch": args.batch, "seq": args.seq, "threads": threads,
                "p50_ms": round(float(np.percentile(t, 50)), 4), "p90_ms": round(float(np.percentile(t, 90)), 4),
                "p99_ms": round(float(np.percentile(t, 99)), 4), "mean_ms": round(float(t.mean()), 4),
                "throughput_seq_per_s": round(args.batch * 1e3 / float(t.mean()), 3), "runs": int(t.size),
            }
            records.append(rec)
            log(f"{eng:17s} T={threads} p50 {rec['p50_ms']:8.3f} ms  p90 {rec['p90_ms']:8.3f}  "
                f"p99 {rec['p99_ms']:8.3f}  mean {rec['mean_ms']:8.3f}  {rec['throughput_seq_per_s']:9.2f} seq/s")
        del sessions
    log(f"load average after timing: {os.getloadavg()[0]:.2f}")
    if args.json:
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        with open(args.json + ".part", "w") as f:
            json.dump(records, f, indent=1)
            f.write("\n")
        os.replace(args.json + ".part", args.json)
        log(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())

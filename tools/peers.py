#!/usr/bin/env python3
"""The int8 peers osq is benched against, built once and cached in --out (default out/onnx).

  python3 tools/peers.py --model models/all-MiniLM-L6-v2 [--out out/onnx] [--check 64] [--rebuild]

Built from the plain FP32 graph of tools/onnx_bench.py (model-fp32.onnx, made without torch):
  ort-opt-fp32          onnxruntime.transformers.optimizer.optimize_model(model_type="bert")
  ort-opt-int8-pt       that graph + quantize_dynamic, per-tensor int8 weights (U8S8)
  ort-opt-int8-pc       that graph + quantize_dynamic, per-channel int8 weights (U8S8)
  ov-int8-nncf          OpenVINO IR: ov.convert_model(model-fp32.onnx) + nncf.quantize(...,
                        model_type=nncf.ModelType.TRANSFORMER) on the calibration sentences
                        (data/movie/calib.txt, one unpadded sentence per sample); compiled by the
                        timing worker for static shapes (LATENCY hint)

It prints what each peer really runs: the fused operators ORT's optimizer made, and for OpenVINO the
runtime precision of every compiled operation (the compiled model's execution graph,
rt_info "runtimePrecision"), and the mean-pooled cosine of each peer against ort-fp32 (--check N
sentences). A JSON summary goes to OUT/peers.json. Versions are pinned in tools/requirements-bench.txt
(bench only; CI never installs them).
"""
import argparse
import collections
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onnx_bench as ob  # noqa: E402  (the FP32 graph builder, tokenizer and caching helpers)

PEERS = {
    "ort-opt-fp32": "model-opt-fp32.onnx",
    "ort-opt-int8-pt": "model-opt-int8-pt.onnx",
    "ort-opt-int8-pc": "model-opt-int8-pc.onnx",
    "ov-int8-nncf": "ov-int8-nncf.xml",
}


def log(*a):
    print("peers:", *a, flush=True)


def fp32_graph(args, cfg, w):
    path = os.path.join(args.out, "model-fp32.onnx")
    st = os.stat(os.path.join(args.model, "model.safetensors"))
    settings = {"graph": ob.GRAPH_VERSION, "weights": os.path.abspath(args.model), "weights_size": st.st_size,
                "weights_mtime_ns": st.st_mtime_ns, "opset": ob.OPSET}
    if not ob.cached(path, settings, args.rebuild):
        ob.build_onnx(cfg, w, path)
        ob.mark_built(path, settings)
        log(f"built {path}")
    return path


def ort_optimized(args, cfg, fp32):
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    base = {"ort": ort.__version__, "fp32_mtime_ns": os.stat(fp32).st_mtime_ns}
    opt = os.path.join(args.out, PEERS["ort-opt-fp32"])
    info = {}
    if not ob.cached(opt, base, args.rebuild):
        m = optimize_model(fp32, model_type="bert", num_heads=cfg["num_attention_heads"],
                           hidden_size=cfg["hidden_size"], opt_level=0)
        stats = m.get_fused_operator_statistics()
        m.save_model_to_file(opt + ".part.onnx")
        os.replace(opt + ".part.onnx", opt)
        ob.mark_built(opt, base)
        with open(opt + ".fusions.json", "w") as f:
            json.dump(stats, f, indent=1)
    with open(opt + ".fusions.json") as f:
        info["ort-opt-fp32"] = {"fused": {k: v for k, v in json.load(f).items() if v}}
    log(f"ort-opt-fp32: fused operators {info['ort-opt-fp32']['fused']}")
    for name, per_channel in (("ort-opt-int8-pt", False), ("ort-opt-int8-pc", True)):
        path = os.path.join(args.out, PEERS[name])
        settings = {**base, "per_channel": per_channel, "weight_type": "QInt8", "reduce_range": False}
        if not ob.cached(path, settings, args.rebuild):
            t0 = time.time()
            quantize_dynamic(opt, path + ".part.onnx", weight_type=QuantType.QInt8, per_channel=per_channel,
                             reduce_range=False,
                             # the fused contrib ops carry no inferred types: their outputs are float
                             extra_options={"DefaultTensorType": ob.TensorProto.FLOAT})
            os.replace(path + ".part.onnx", path)
            ob.mark_built(path, settings)
            log(f"{name}: quantize_dynamic per_channel={per_channel} ({time.time() - t0:.1f}s)")
        ops = collections.Counter(n.op_type for n in ob.onnx.load(path, load_external_data=False).graph.node)
        info[name] = {"ops": dict(ops.most_common())}
    return info


def openvino_nncf(args, tok, fp32):
    import nncf
    import openvino as ov

    xml = os.path.join(args.out, PEERS["ov-int8-nncf"])
    sents, src = ob.calib_sentences()
    settings = {"openvino": ov.__version__, "nncf": nncf.__version__, "fp32_mtime_ns": os.stat(fp32).st_mtime_ns,
                "calib_source": src, "calib_n": len(sents), "model_type": "TRANSFORMER"}
    if not ob.cached(xml, settings, args.rebuild):
        t0 = time.time()
        model = ov.convert_model(fp32)
        samples = [ob.encode(tok, [s]) for s in sents]
        q = nncf.quantize(model, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER,
                          subset_size=len(samples))
        ov.save_model(q, xml + ".part.xml")
        os.replace(xml + ".part.bin", xml[:-4] + ".bin")
        os.replace(xml + ".part.xml", xml)
        ob.mark_built(xml, settings)
        log(f"ov-int8-nncf: nncf.quantize(TRANSFORMER) on {len(sents)} sentences from {src} "
            f"({time.time() - t0:.1f}s)")
    return xml, settings


def ov_compile(xml, batch, seq, threads):
    """The compiled model the timing worker uses: static [batch, seq], LATENCY, `threads`."""
    import openvino as ov

    core = ov.Core()
    m = core.read_model(xml)
    m.reshape({i.get_any_name(): ov.PartialShape([batch, seq]) for i in m.inputs})
    return core.compile_model(m, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
                                         "NUM_STREAMS": 1})


def ov_precisions(compiled):
    """Runtime precision of every operation of the compiled model, counted by (type, precision)."""
    c = collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        typ = rt["layerType"].astype(str) if "layerType" in rt else op.get_type_name()
        prec = rt["runtimePrecision"].astype(str) if "runtimePrecision" in rt else "?"
        c[f"{typ}:{prec}"] += 1
    return dict(c.most_common())


def mean_pool(h, mask):
    m = mask[..., None].astype(np.float64)
    return (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)


def check(args, tok, paths):
    """Mean-pooled cosine of every peer vs ort-fp32 on --check sentences (one sentence per call)."""
    import onnxruntime as ort
    import openvino as ov

    sents, src = ob.eval_sentences()
    sents = sents[:args.check]
    feeds = [ob.encode(tok, [s]) for s in sents]
    ref_s = ob.session(os.path.join(args.out, "model-fp32.onnx"), 2)
    ref = np.concatenate([mean_pool(ref_s.run(None, ob.feeds_for(ref_s, f))[0], f["attention_mask"]) for f in feeds])
    out = {}
    for name, path in paths.items():
        if path.endswith(".xml"):
            core = ov.Core()
            cm = core.compile_model(core.read_model(path), "CPU", {"INFERENCE_NUM_THREADS": 2})
            got = np.concatenate([mean_pool(cm(f)[0], f["attention_mask"]) for f in feeds])
        else:
            s = ob.session(path, 2)
            got = np.concatenate([mean_pool(s.run(None, ob.feeds_for(s, f))[0], f["attention_mask"]) for f in feeds])
        cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
        out[name] = {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()), "sentences": len(sents)}
        log(f"{name:16s} vs ort-fp32, mean-pooled, {len(sents)} sentences of {src}: "
            f"cosine mean {cos.mean():.6f} min {cos.min():.6f}")
    return out


def main():
    ap = argparse.ArgumentParser(description="build the int8 peers (ORT optimized, OpenVINO + NNCF) for the bench")
    ap.add_argument("--model", default=os.path.join(ob.ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--out", default=os.path.join(ob.ROOT, "out", "onnx"))
    ap.add_argument("--check", type=int, default=64, help="sentences for the cosine check (0: none)")
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args()
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"peers: {e}: pip install -r tools/requirements-bench.txt")
    os.makedirs(args.out, exist_ok=True)
    cfg, w = ob.load_model(args.model)
    tok = ob.load_tokenizer(args.model, 512)
    fp32 = fp32_graph(args, cfg, w)
    summary = {"ort": ort_optimized(args, cfg, fp32)}
    xml, ov_settings = openvino_nncf(args, tok, fp32)
    prec = ov_precisions(ov_compile(xml, 1, 128, 1))
    summary["ov-int8-nncf"] = {"settings": ov_settings, "runtime_precisions_b1_s128": prec}
    log("ov-int8-nncf runtime precisions (b1 s128): "
        + ", ".join(f"{k} ×{v}" for k, v in prec.items() if not k.startswith(("Input", "Output", "Constant"))))
    if args.check:
        summary["check"] = check(args, tok, {n: os.path.join(args.out, f) for n, f in PEERS.items()})
    with open(os.path.join(args.out, "peers.json"), "w") as f:
        json.dump(summary, f, indent=1)
    log(f"wrote {os.path.join(args.out, 'peers.json')}")


if __name__ == "__main__":
    main()

"""Peer timing worker driven by osq-serve-bench (JSON lines on stdin/stdout): ONNX Runtime and OpenVINO.

Embedded in the osq-serve-bench binary (include_str!) and started with `python3 -c`, so that the
peers are timed in the same interleaved blocks as the osq engines, on the very same token ids.
- A `.onnx` path runs on ONNX Runtime (CPU provider): intra_op_num_threads=T, inter_op 1, sequential,
  all graph optimisations, as tools/onnx_bench.py; with "spin": false the intra/inter-op pools do
  not spin after a run (session.intra_op.allow_spinning = 0), so an idle ORT thread cannot steal a
  core from the engine timed next.
- A `.xml` path is an OpenVINO IR (tools/peers.py: NNCF int8). It is compiled for the static shape
  of the current input ([batch, seq], reshaped) with PERFORMANCE_HINT=LATENCY, NUM_STREAMS=1 and
  INFERENCE_NUM_THREADS=T, once per (engine, threads, shape); the compile happens in the first
  (untimed warm-up) call after an input change. OpenVINO has no spin setting; its TBB workers go
  to sleep on their own, which the bench's settle pause between blocks waits for.
A run is timed around the synchronous call with time.perf_counter.

Requests: {"cmd": "load", "engine": E, "path": P, "threads": T, "spin": bool}
| {"cmd": "input", "ids": [[..]], "mask": [[..]]} | {"cmd": "time", "engine": E, "threads": T, "runs": N}
| {"cmd": "quit"}. Each answer is one line: {"ok": true, ...} or {"ok": false, "error": "..."}.
"""
import json
import sys
import time

import numpy as np


class OrtPeer:
    def __init__(self, path, threads, spin):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if not spin:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.s = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
        self.names = {i.name for i in self.s.get_inputs()}
        self.version = "onnxruntime " + ort.__version__
        self.feeds = None

    def input(self, feeds):
        self.feeds = {k: v for k, v in feeds.items() if k in self.names}

    def run(self):
        self.s.run(None, self.feeds)


class OpenVinoPeer:
    def __init__(self, path, threads, spin):
        import openvino as ov

        self.ov = ov
        self.core = ov.Core()
        self.model = self.core.read_model(path)
        self.threads = threads
        self.compiled = {}  # shape -> infer request (only the current shape is kept)
        self.version = "openvino " + ov.__version__
        self.req = None
        self.feeds = None

    def input(self, feeds):
        names = {i.get_any_name() for i in self.model.inputs}
        self.feeds = {k: v for k, v in feeds.items() if k in names}
        self.req = None

    def _request(self):
        shape = tuple(next(iter(self.feeds.values())).shape)
        if shape not in self.compiled:
            self.compiled.clear()
            m = self.model.clone()
            m.reshape({i.get_any_name(): self.ov.PartialShape(list(shape)) for i in m.inputs})
            cm = self.core.compile_model(m, "CPU", {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
                                                    "INFERENCE_NUM_THREADS": self.threads})
            self.compiled[shape] = cm.create_infer_request()
        return self.compiled[shape]

    def run(self):
        if self.req is None:
            self.req = self._request()
        self.req.infer(self.feeds)


def main():
    peers = {}
    feeds = None
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            cmd = req["cmd"]
            if cmd == "quit":
                print(json.dumps({"ok": True}), flush=True)
                return
            if cmd == "load":
                key = (req["engine"], int(req["threads"]))
                if key not in peers:
                    cls = OpenVinoPeer if req["path"].endswith(".xml") else OrtPeer
                    peers[key] = cls(req["path"], key[1], bool(req.get("spin", False)))
                    if feeds is not None:
                        peers[key].input(feeds)
                out = {"ok": True, "version": peers[key].version}
            elif cmd == "input":
                ids = np.array(req["ids"], np.int64)
                mask = np.array(req["mask"], np.int64)
                feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
                for p in peers.values():
                    p.input(feeds)
                out = {"ok": True}
            elif cmd == "time":
                p = peers[(req["engine"], int(req["threads"]))]
                ms = []
                for _ in range(int(req["runs"])):
                    t0 = time.perf_counter()
                    p.run()
                    ms.append((time.perf_counter() - t0) * 1e3)
                out = {"ok": True, "ms": ms}
            else:
                out = {"ok": False, "error": f"unknown command {cmd!r}"}
        except Exception as e:  # report, keep serving
            out = {"ok": False, "error": repr(e)}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()

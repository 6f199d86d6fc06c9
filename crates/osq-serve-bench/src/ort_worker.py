"""ONNX Runtime timing worker driven by osq-serve-bench (JSON lines on stdin/stdout).

Embedded in the osq-serve-bench binary (include_str!) and started with `python3 -c`, so that ORT
runs are timed in the same interleaved blocks as the osq engines, on the very same token ids.
Sessions are configured exactly as tools/onnx_bench.py configures them (intra_op_num_threads=T,
inter_op 1, sequential, all graph optimisations); a run is timed around `session.run` with
time.perf_counter, as there.

Requests: {"cmd": "load", "engine": E, "path": P, "threads": T} | {"cmd": "input", "ids": [[..]],
"mask": [[..]]} | {"cmd": "time", "engine": E, "threads": T, "runs": N} | {"cmd": "quit"}.
Each answer is one line: {"ok": true, ...} or {"ok": false, "error": "..."}.
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])


def main():
    sessions = {}
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
                if key not in sessions:
                    sessions[key] = session(req["path"], key[1])
                out = {"ok": True, "version": ort.__version__}
            elif cmd == "input":
                ids = np.array(req["ids"], np.int64)
                mask = np.array(req["mask"], np.int64)
                feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
                out = {"ok": True}
            elif cmd == "time":
                s = sessions[(req["engine"], int(req["threads"]))]
                names = {i.name for i in s.get_inputs()}
                f = {k: v for k, v in feeds.items() if k in names}
                ms = []
                for _ in range(int(req["runs"])):
                    t0 = time.perf_counter()
                    s.run(None, f)
                    ms.append((time.perf_counter() - t0) * 1e3)
                out = {"ok": True, "ms": ms}
            else:
                out = {"ok": False, "error": f"unknown command {cmd!r}"}
        except Exception as e:  # report, keep serving
            out = {"ok": False, "error": repr(e)}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()

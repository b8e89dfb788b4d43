#!/usr/bin/env python3
"""Converts ONNX's own conformance cases for the Attention operator into .npy files + case.json.

For every case test_attention_* it writes OUT/<case>/:
  input_<i>.npy   node input slot i (0 Q, 1 K, 2 V, 3 attn_mask, 4 past_key, 5 past_value,
                  6 nonpad_kv_seqlen); only the slots the case uses exist
  output_<i>.npy  node output slot i (0 Y, 1 present_key, 2 present_value, 3 qk_matmul_output)
  case.json       opset, attributes (as set, and with the schema's defaults filled in),
                  every input/output slot with its name, presence, dtypes and shape
and OUT/index.json listing every case. float16 and bfloat16 tensors are widened to float32
(exact) because NumPy's .npy has no bfloat16; case.json keeps the original ONNX dtype.

The cases come from the installed `onnx` package: onnx/backend/test/data/node/test_attention_*
when the package ships them; otherwise (the PyPI wheels of recent releases do not) they are
generated first, into OUT/_onnx_node_data, from the package's own case definitions
(onnx.backend.test.case.node.collect_testcases("Attention")) exactly as
`python -m onnx.backend.test.cmd_tools generate-data` would. ONNX reseeds NumPy with 0 before
every case definition runs, so the generated inputs are the ones the onnx repository's own
data/node files hold for the same onnx version. Either way the files are then read back
with onnx.load and onnx.numpy_helper.to_array from model.onnx and test_data_set_0/*.pb.

The `_expanded` twins of each case (same data; the graph holds the operator's function body
instead of an Attention node) are checked to carry identical data and are not written.

Usage: convert_onnx_cases.py OUT [--cases NAME,...] [--onnx-data DIR] [--markdown]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import warnings

import numpy as np
import onnx
import onnx.defs
from onnx import helper, numpy_helper

INPUT_SLOTS = ["Q", "K", "V", "attn_mask", "past_key", "past_value", "nonpad_kv_seqlen"]
OUTPUT_SLOTS = ["Y", "present_key", "present_value", "qk_matmul_output"]
WIDENED = {"float16", "bfloat16"}
# What the ONNX backend test runner compares node outputs with (onnx.backend.test.runner).
ONNX_RTOL, ONNX_ATOL = 1e-3, 1e-7


def installed_node_data_dir() -> str:
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")


def generate_node_data(dest: str) -> None:
    """Writes the Attention node cases as ONNX's own generate-data command lays them out."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = collect_testcases("Attention")
    for case in cases:
        case_dir = os.path.join(dest, case.name)
        os.makedirs(case_dir, exist_ok=True)
        with open(os.path.join(case_dir, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        for k, (inputs, outputs) in enumerate(case.data_sets):
            set_dir = os.path.join(case_dir, f"test_data_set_{k}")
            os.makedirs(set_dir, exist_ok=True)
            for j, value in enumerate(inputs):
                proto = numpy_helper.from_array(value, case.model.graph.input[j].name)
                with open(os.path.join(set_dir, f"input_{j}.pb"), "wb") as f:
                    f.write(proto.SerializeToString())
            for j, value in enumerate(outputs):
                proto = numpy_helper.from_array(value, case.model.graph.output[j].name)
                with open(os.path.join(set_dir, f"output_{j}.pb"), "wb") as f:
                    f.write(proto.SerializeToString())


def read_tensor(path: str) -> np.ndarray:
    proto = onnx.TensorProto()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    return numpy_helper.to_array(proto)


def onnx_dtype_name(array: np.ndarray) -> str:
    name = array.dtype.name
    return {"bool": "bool"}.get(name, name)


def npy_ready(array: np.ndarray) -> np.ndarray:
    """float16/bfloat16 widened to float32 (exact); C order; little-endian."""
    if onnx_dtype_name(array) in WIDENED:
        array = array.astype(np.float32)
    return np.ascontiguousarray(array)


def attribute_values(node: onnx.NodeProto) -> dict:
    out = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode()
        out[attr.name] = value
    return out


def effective_attributes(schema, explicit: dict) -> dict:
    """Every attribute of the schema: the node's value, else the schema default (None = no default)."""
    out = {}
    for name, attr in sorted(schema.attributes.items()):
        default = helper.get_attribute_value(attr.default_value) if attr.default_value.name else None
        out[name] = explicit.get(name, default)
    return out


def load_case(case_dir: str) -> dict:
    model = onnx.load(os.path.join(case_dir, "model.onnx"))
    nodes = [n for n in model.graph.node if n.op_type == "Attention" and n.domain in ("", "ai.onnx")]
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    data_dir = os.path.join(case_dir, "test_data_set_0")
    inputs = [read_tensor(p) for p in sorted(glob.glob(os.path.join(data_dir, "input_*.pb")),
                                             key=lambda p: int(p.rsplit("_", 1)[1][:-3]))]
    outputs = [read_tensor(p) for p in sorted(glob.glob(os.path.join(data_dir, "output_*.pb")),
                                              key=lambda p: int(p.rsplit("_", 1)[1][:-3]))]
    return {"model": model, "node": nodes[0] if len(nodes) == 1 else None, "opset": opset,
            "inputs": inputs, "outputs": outputs}


def slot_table(kind: str, formal: list[str], node_names: list[str], graph_values, arrays) -> list:
    """One entry per formal slot; data matched to slots by the graph's input/output names."""
    by_name = {v.name: a for v, a in zip(graph_values, arrays)}
    table = []
    for i, formal_name in enumerate(formal):
        name = node_names[i] if i < len(node_names) else ""
        entry = {"index": i, "formal_name": formal_name, "name": name, "present": bool(name)}
        if name:
            array = by_name[name]
            entry.update({
                "file": f"{kind}_{i}.npy",
                "onnx_dtype": onnx_dtype_name(array),
                "npy_dtype": npy_ready(array).dtype.name,
                "shape": list(array.shape),
            })
        else:
            entry["skipped"] = "empty name" if i < len(node_names) else "not listed"
        table.append(entry)
    return table


def case_features(attrs: dict, inputs: list[dict], outputs: list[dict]) -> list[str]:
    """Short tags for what a case exercises, so a runner can pick the cases it supports."""
    shape = {e["formal_name"]: e["shape"] for e in inputs if e["present"]}
    dtype = {e["formal_name"]: e["onnx_dtype"] for e in inputs if e["present"]}
    q, k, v = shape["Q"], shape["K"], shape["V"]
    tags = [f"{len(q)}d"]
    if len(q) == 3:
        hq, hkv = attrs["q_num_heads"], attrs["kv_num_heads"]
        dk, dv = k[2] // hkv, v[2] // hkv
        t, s = q[1], k[1]
    else:
        hq, hkv, dk, dv, t, s = q[1], k[1], k[3], v[3], q[2], k[2]
    if hq != hkv:
        tags.append(f"gqa{hq}:{hkv}")
    if dk != dv:
        tags.append("dv!=dk")
    if "past_key" in shape:
        tags.append("past")
        s += shape["past_key"][2]
    if t != s:
        tags.append("t!=s")
    if "attn_mask" in shape:
        kind = "bool" if dtype["attn_mask"] == "bool" else "float"
        tags.append(f"{kind}-mask{shape['attn_mask']}".replace(" ", ""))
        if shape["attn_mask"][-1] < s:
            tags.append("short-mask")
    if attrs["is_causal"]:
        tags.append("causal")
    if "nonpad_kv_seqlen" in shape:
        tags.append("nonpad")
    if attrs.get("left_window_size", -1) >= 0 or attrs.get("right_window_size", -1) >= 0:
        tags.append("window")
    if attrs["scale"] is not None:
        tags.append("scale")
    if attrs["softcap"] and attrs["softcap"] > 0:
        tags.append("softcap")
    if any(e["present"] and e["formal_name"] == "qk_matmul_output" for e in outputs):
        tags.append(f"qk-out-mode{attrs['qk_matmul_output_mode']}")
    if attrs["softmax_precision"] is not None:
        tags.append(f"softmax-precision={helper.tensor_dtype_to_np_dtype(attrs['softmax_precision']).name}")
    return tags


def convert_case(name: str, case_dir: str, out_dir: str, source: str) -> dict:
    case = load_case(case_dir)
    node = case["node"]
    if node is None:
        raise RuntimeError(f"{name}: model holds no single Attention node")
    schema = onnx.defs.get_schema("Attention", case["opset"])
    explicit = attribute_values(node)
    node_inputs, node_outputs = list(node.input), list(node.output)
    inputs = slot_table("input", INPUT_SLOTS, node_inputs, case["model"].graph.input, case["inputs"])
    outputs = slot_table("output", OUTPUT_SLOTS, node_outputs, case["model"].graph.output, case["outputs"])
    dest = os.path.join(out_dir, name)
    os.makedirs(dest, exist_ok=True)
    for old in glob.glob(os.path.join(dest, "*.npy")):
        os.remove(old)
    by_name_in = {v.name: a for v, a in zip(case["model"].graph.input, case["inputs"])}
    by_name_out = {v.name: a for v, a in zip(case["model"].graph.output, case["outputs"])}
    for entry in inputs:
        if entry["present"]:
            np.save(os.path.join(dest, entry["file"]), npy_ready(by_name_in[entry["name"]]))
    for entry in outputs:
        if entry["present"]:
            np.save(os.path.join(dest, entry["file"]), npy_ready(by_name_out[entry["name"]]))
    softmax_precision = explicit.get("softmax_precision")
    effective = effective_attributes(schema, explicit)
    record = {
        "name": name,
        "op_type": "Attention",
        "opset": case["opset"],
        "schema_since_version": schema.since_version,
        "onnx_version": onnx.__version__,
        "source": source,
        "attributes": explicit,
        "effective_attributes": effective,
        "features": case_features(effective, inputs, outputs),
        "softmax_precision_dtype": (helper.tensor_dtype_to_np_dtype(softmax_precision).name
                                    if softmax_precision is not None else None),
        "node_inputs": node_inputs,
        "node_outputs": node_outputs,
        "inputs": inputs,
        "outputs": outputs,
        "onnx_rtol": ONNX_RTOL,
        "onnx_atol": ONNX_ATOL,
    }
    with open(os.path.join(dest, "case.json"), "w") as f:
        json.dump(record, f, indent=1, sort_keys=False)
        f.write("\n")
    return record


def same_data(a: dict, b: dict) -> bool:
    def equal(x, y):
        return (x.dtype == y.dtype and x.shape == y.shape and
                np.array_equal(x.view(np.uint8), y.view(np.uint8)))
    return (len(a["inputs"]) == len(b["inputs"]) and len(a["outputs"]) == len(b["outputs"]) and
            all(equal(x, y) for x, y in zip(a["inputs"] + a["outputs"], b["inputs"] + b["outputs"])))


def summary_rows(records: list[dict]) -> list[list[str]]:
    rows = []
    for r in records:
        present = [e for e in r["inputs"] if e["present"]]
        dtypes = sorted({e["onnx_dtype"] for e in present})
        attrs = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in sorted(r["attributes"].items()))
        shapes = " ".join(f"{e['formal_name']}{e['shape']}".replace(" ", "") for e in present)
        outs = " ".join(f"{e['formal_name']}{e['shape']}".replace(" ", "")
                        for e in r["outputs"] if e["present"])
        rows.append([r["name"], str(r["opset"]), "/".join(dtypes), " ".join(r["features"]),
                     attrs or "-", shapes, outs])
    return rows


HEADER = ["case", "opset", "dtypes", "features", "attributes (as set)", "inputs", "outputs"]


def print_table(rows: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(HEADER) + " |")
        print("|" + "|".join("---" for _ in HEADER) + "|")
        for row in rows:
            print("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
        return
    widths = [max(len(HEADER[i]), *(len(r[i]) for r in rows)) for i in range(len(HEADER))]
    print("  ".join(h.ljust(w) for h, w in zip(HEADER, widths)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output directory (one folder per case)")
    parser.add_argument("--cases", help="comma-separated case names to convert (default: all)")
    parser.add_argument("--onnx-data", help="a data/node directory to read instead of the installed "
                        "package's (e.g. from an onnx source checkout)")
    parser.add_argument("--markdown", action="store_true", help="print the summary as a Markdown table")
    args = parser.parse_args()

    os.makedirs(args.out, exist_ok=True)
    data_dir = args.onnx_data or installed_node_data_dir()
    source = "installed onnx package data"
    if args.onnx_data:
        source = f"data directory {args.onnx_data}"
    elif not glob.glob(os.path.join(data_dir, "test_attention_*")):
        data_dir = os.path.join(args.out, "_onnx_node_data")
        generate_node_data(data_dir)
        source = "generated from onnx.backend.test.case.node.collect_testcases('Attention')"
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(data_dir, "test_attention_*"))
                   if os.path.isdir(p))
    if not names:
        print(f"convert_onnx_cases: no test_attention_* cases in {data_dir}", file=sys.stderr)
        return 1
    wanted = set(args.cases.split(",")) if args.cases else None
    if wanted:
        unknown = wanted - set(names)
        if unknown:
            print(f"convert_onnx_cases: unknown case(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 1

    records, expanded_checked = [], 0
    for name in names:
        if name.endswith("_expanded"):
            continue
        if wanted and name not in wanted:
            continue
        records.append(convert_case(name, os.path.join(data_dir, name), args.out, source))
        twin = os.path.join(data_dir, name + "_expanded")
        if os.path.isdir(twin):
            if not same_data(load_case(os.path.join(data_dir, name)), load_case(twin)):
                print(f"convert_onnx_cases: {name}_expanded carries different data than {name}",
                      file=sys.stderr)
                return 1
            expanded_checked += 1

    index = {
        "onnx_version": onnx.__version__,
        "source": source,
        "cases": [{"name": r["name"], "opset": r["opset"],
                   "dtypes": sorted({e["onnx_dtype"] for e in r["inputs"] if e["present"]}),
                   "features": r["features"],
                   "attributes": r["attributes"]} for r in records],
    }
    if not wanted:
        with open(os.path.join(args.out, "index.json"), "w") as f:
            json.dump(index, f, indent=1)
            f.write("\n")
    print_table(summary_rows(records), args.markdown)
    print(f"\n{len(records)} cases written to {args.out} ({source}); "
          f"{expanded_checked} _expanded twins checked identical and skipped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""bench/build.py - bookkeeping and hnswlib helper of bench/build (numpy, hnswlib).

Run it with Debian's /usr/bin/python3 (python3-hnswlib and numpy).  It reads
vectors with bench/ann.py's readers.  Subcommands:

  has FILE KEY
      exit 0 if FILE (JSON lines) holds a record whose "key" is KEY.

  record FILE KEY=VALUE...
      append one JSON line built from the pairs (values parsed as JSON where
      they parse, else kept as strings) with the date; a later line with the
      same key replaces an earlier one in the tables.

  hnswlib --base B.fvecs --rows N --query Q.fvecs --queries Q --truth T.tsv
          --metric M --m M --efc E --threads T --ef 40 [--runs 3]
      build an hnswlib index of the first N base rows with T threads, timing
      add_items only, then search the first Q queries one at a time with
      one thread at ef; print one JSON object: build_s, build_vec_per_s,
      size_bytes (of the saved index), recall, us_per_query (median over
      the timed passes of each pass's mean, Python call included).  Cosine
      vectors are unit-normalised first and searched with space 'ip'.

  table FILE DATASET ROWS M EFC
      print the markdown tables of one dataset, size and ef_construction:
      every build, the ratios the omen issue's targets are about, and the
      maintenance_work_mem comparison if measured.
"""

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ann  # noqa: E402  (bench/ann.py: fvecs readers)

# ---------------------------------------------------------------- records


def _records(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    r = json.loads(line)
                    out[r.get("key")] = r
    except FileNotFoundError:
        pass
    return out


def cmd_has(a):
    return 0 if a.key in _records(a.file) else 1


def _value(s):
    try:
        return json.loads(s)
    except ValueError:
        return s


STRINGS = {"key", "dataset", "impl", "mwm", "cpu", "pg_version", "pgvector_version",
           "omen_version", "git_commit", "omen_so_sha256", "simd", "hnswlib_version",
           "shared_buffers", "uptime", "metric", "series"}


def cmd_record(a):
    rec = {}
    for item in a.pairs:
        k, _, v = item.partition("=")
        rec[k] = v if k in STRINGS else _value(v)
    rec["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(a.file, "a") as f:
        f.write(json.dumps(rec) + "\n")
    return 0


# ---------------------------------------------------------------- hnswlib


def _truth(path, count):
    rows = []
    with open(path) as f:
        for line in f:
            _, ids = line.rstrip("\n").split("\t")
            rows.append(set(int(x) for x in ids.strip("{}").split(",")))
    return rows[:count]


def cmd_hnswlib(a):
    import hnswlib
    import numpy as np

    base = ann.read_vecs(a.base, a.rows)
    queries = ann.read_vecs(a.query, a.queries)
    truth = _truth(a.truth, queries.shape[0])
    if a.metric == "cosine":
        base = base / np.linalg.norm(base, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        space = "ip"
    elif a.metric == "l2":
        space = "l2"
    else:
        raise SystemExit("hnswlib: metric %s not supported" % a.metric)
    base = np.ascontiguousarray(base, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    ids = np.arange(1, base.shape[0] + 1)
    idx = hnswlib.Index(space=space, dim=base.shape[1])
    idx.init_index(max_elements=base.shape[0], M=a.m, ef_construction=a.efc, random_seed=100)
    idx.set_num_threads(a.threads)
    t0 = time.perf_counter()
    idx.add_items(base, ids, num_threads=a.threads)
    build_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "index.bin")
        idx.save_index(p)
        size = os.path.getsize(p)
    idx.set_num_threads(1)
    idx.set_ef(a.ef)
    found = [None] * queries.shape[0]
    for i in range(queries.shape[0]):                     # warm-up pass, kept for recall
        found[i] = idx.knn_query(queries[i:i + 1], k=10, num_threads=1)[0][0]
    means = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        for i in range(queries.shape[0]):
            idx.knn_query(queries[i:i + 1], k=10, num_threads=1)
        means.append((time.perf_counter() - t0) / queries.shape[0] * 1e6)
    recall = sum(len(truth[i] & set(int(x) for x in found[i])) / len(truth[i])
                 for i in range(len(found))) / len(found)
    print(json.dumps({"build_s": round(build_s, 3),
                      "build_vec_per_s": round(base.shape[0] / build_s),
                      "size_bytes": size, "recall": round(recall, 4),
                      "us_per_query": round(statistics.median(means), 1),
                      "us_runs": [round(x, 1) for x in means]}))
    return 0


# ---------------------------------------------------------------- tables


def _f(x, nd=0):
    if x is None:
        return "-"
    if nd == 0:
        return "{:,.0f}".format(x)
    return "%.*f" % (nd, x)


def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


NAME = {"omen": "omen", "pgvector": "pgvector hnsw", "hnswlib": "hnswlib 0.6.2"}


def cmd_table(a):
    recs = [r for r in _records(a.file).values()
            if r.get("dataset") == a.dataset and r.get("rows") == a.rows
            and r.get("m") == a.m and r.get("efc") == a.efc]
    if not recs:
        print("(no results for %s, %d rows, m %d, ef_construction %d)"
              % (a.dataset, a.rows, a.m, a.efc))
        return 0
    r0 = recs[0]
    main = [r for r in recs if r.get("series") != "mwm"]
    order = {"omen": 0, "pgvector": 1, "hnswlib": 2}
    main.sort(key=lambda r: (order.get(r["impl"], 9), r["procs"], r.get("rep", 1)))
    print("**%s**: %s x %s, %s; m = %d, ef_construction = %d; recall@10 and time per query "
          "at ef_search %s over %s queries; maintenance_work_mem 4GB"
          % (a.dataset, "{:,}".format(a.rows), r0.get("dims"), r0.get("metric"), a.m, a.efc,
             r0.get("ef"), r0.get("queries")))
    print()
    print("| build | processes | build s | vec/s | index MiB | segments | recall@10 | us/query | load |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    nreps = {}
    for r in main:
        nreps[(r["impl"], r["procs"])] = nreps.get((r["impl"], r["procs"]), 0) + 1
    for r in main:
        name = NAME.get(r["impl"], r["impl"])
        if nreps[(r["impl"], r["procs"])] > 1:
            name += " #%d" % r.get("rep", 1)
        print("| %s | %d%s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, r["procs"], "" if r.get("workers_launched") in (None, r["procs"] - 1)
            else " (%s launched)" % (1 + r["workers_launched"]),
            _f(r.get("build_s"), 1), _f(r.get("build_vec_per_s")),
            _f((r.get("size_bytes") or 0) / 2**20, 1), _f(r.get("segments")),
            _f(r.get("recall"), 3), _f(r.get("us_per_query")), r.get("load1", "-")))

    def get(impl, procs, field):
        """median over the repeated builds of IMPL with PROCS"""
        return _med([r.get(field) for r in main if r["impl"] == impl and r["procs"] == procs])

    lines = ["ratios of medians over the repeated builds"] if max(nreps.values()) > 1 else []
    o2 = get("omen", 2, "build_vec_per_s")
    for impl in ("hnswlib", "pgvector"):
        for p in (1, 2):
            other = get(impl, p, "build_vec_per_s")
            if o2 and other:
                lines.append("omen 2 processes / %s %d: %.2fx" % (NAME[impl], p, o2 / other))
    o1 = get("omen", 1, "build_vec_per_s")
    if o1 and o2:
        lines.append("omen 2 processes / omen 1 process: %.2fx" % (o2 / o1))
    serial = [r.get("recall") for r in main if r["impl"] == "omen" and r["procs"] == 1]
    pars = [r.get("recall") for r in main if r["impl"] == "omen" and r["procs"] == 2]
    for par in pars if serial else []:
        med, lo, hi = _med(serial), min(serial), max(serial)
        ok = abs(par - med) <= 0.005 or lo <= par <= hi
        lines.append("recall: omen 2 processes %.4f, serial builds median %.4f (range %.4f-%.4f, "
                     "%d builds): %s" % (par, med, lo, hi, len(serial),
                                         "within 0.5 pp or the range" if ok else "OUTSIDE 0.5 pp and the range"))
    par = get("omen", 2, "recall")
    for impl in ("hnswlib", "pgvector"):
        rr = get(impl, 2, "recall")
        if par is not None and rr is not None:
            lines.append("recall omen 2 processes - %s 2: %+.3f" % (NAME[impl], par - rr))
    if lines:
        print()
        for s in lines:
            print("- " + s)

    mw = [r for r in recs if r.get("series") == "mwm"]
    if mw:
        def mwm_bytes(s):
            u = {"kB": 2**10, "MB": 2**20, "GB": 2**30}
            return int(s[:-2]) * u[s[-2:]]
        mw.sort(key=lambda r: -mwm_bytes(r["mwm"]))
        ref = next((r for r in mw if r["mwm"] == "4GB"), None)
        print()
        print("**maintenance_work_mem** (omen, %d processes): build, then after "
              "`omen_merge_segments`; ef_search %s" % (mw[0]["procs"], r0.get("ef")))
        print()
        print("| maintenance_work_mem | build s | vec/s | slower than 4GB | segments | recall@10 "
              "| us/query | merge s | segments after | recall@10 after | us/query after |")
        print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for r in mw:
            slow = (r["build_s"] / ref["build_s"]) if ref and ref.get("build_s") else None
            print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                r["mwm"], _f(r.get("build_s"), 1), _f(r.get("build_vec_per_s")),
                "%.2fx" % slow if slow else "-", _f(r.get("segments")), _f(r.get("recall"), 3),
                _f(r.get("us_per_query")), _f(r.get("merge_s"), 1),
                _f(r.get("merged_segments")), _f(r.get("merged_recall"), 3),
                _f(r.get("merged_us_per_query"))))
    return 0


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("has")
    p.add_argument("file")
    p.add_argument("key")
    p = sub.add_parser("record")
    p.add_argument("file")
    p.add_argument("pairs", nargs="*")
    p = sub.add_parser("hnswlib")
    for opt in ("--base", "--query", "--truth", "--metric"):
        p.add_argument(opt, required=True)
    for opt in ("--rows", "--queries", "--m", "--efc", "--threads", "--ef"):
        p.add_argument(opt, type=int, required=True)
    p.add_argument("--runs", type=int, default=3)
    p = sub.add_parser("table")
    p.add_argument("file")
    p.add_argument("dataset")
    p.add_argument("rows", type=int)
    p.add_argument("m", type=int)
    p.add_argument("efc", type=int)
    a = ap.parse_args(argv)
    return {"has": cmd_has, "record": cmd_record, "hnswlib": cmd_hnswlib,
            "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/python3
"""bench/filtered.py - data and bookkeeping helper of bench/filtered (numpy only).

Run it with Debian's /usr/bin/python3 (it imports bench/ann.py for reading
.fvecs files and writing binary COPY files).  Subcommands:

  prepare --dataset fashion|glove --out DIR --queries Q [--rows N]
      write DIR/base.copy (binary COPY of items (id int, cat int, sub int,
      v vector)), DIR/query.copy (queries (id int, v vector)), DIR/filters.tsv
      ("SEL<TAB>WHERE-CLAUSE<TAB>MATCHING-ROWS") and DIR/truth.tsv
      ("SEL<TAB>QID<TAB>{id,...}": the exact filtered top-10 of each query,
      numpy brute force in float64, ties broken by smaller id).  Ids are
      1-based (file row + 1).  Prints "ROWS DIMS QUERIES METRIC" on stdout.
      A few seconds for Fashion-MNIST 20K, about 10 s for GloVe 100K.

  missing --jsonl J --tag TAG --points "SEL:METHOD ..." [--force]
      print the points of the list that J holds no result for (under TAG).

  record --jsonl J --json '{...}' KEY=VALUE...
      append one line to J: the JSON object with the KEY=VALUE pairs added.

  plan
      read EXPLAIN (COSTS OFF) text on stdin, print its plan nodes in one
      line ("Limit > Sort > Bitmap Heap Scan > Bitmap Index Scan (items_attr)").

  table --jsonl J --tag TAG
      print the markdown table of one dataset: per point the median over
      the runs (lines) J holds for it.

The attributes (documented in bench/README.md, "Filtered queries"):

  perm = numpy.random.default_rng(8).permutation(ROWS), a uniform random
  permutation of the row numbers, independent of the vectors.

  glove:    cat = perm[row] % 1000, sub = 0: uniform over 0..999.
            50%: cat < 500   10%: cat < 100   1%: cat < 10   0.1%: cat = 0
  fashion:  cat = the image's class label (0..9, about 10% each; 0 is
            "T-shirt/top"), sub = perm[row] % 100 (uniform over 0..99).
            50%: cat < 5     10%: cat = 0     1%: cat = 0 AND sub < 10
            0.1%: cat = 0 AND sub = 0
            One class is 10%; below that the class is cut further by sub.
            A class filter is correlated with the vectors: for a query of
            another class the filtered neighbours are far away.
"""

import argparse
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ann  # noqa: E402

DATA = os.path.join(os.environ.get("OMEN_SHARED") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared"), "data")

DATASETS = {
    "fashion": ("fashion-mnist-784-euclidean", "l2"),
    "glove": ("glove6b-100-angular", "cosine"),
}

SELS = ["50", "10", "1", "0.1"]

FILTERS = {
    "glove": {"50": "cat < 500", "10": "cat < 100", "1": "cat < 10", "0.1": "cat = 0"},
    "fashion": {"50": "cat < 5", "10": "cat = 0", "1": "cat = 0 AND sub < 10",
                "0.1": "cat = 0 AND sub = 0"},
}

METHOD_LABEL = {
    "planner": "planner's choice (omen index present)",
    "omen": "omen, forced",
    "seqscan": "sequential scan, forced",
    "hnsw_off": "pgvector hnsw, iterative_scan off",
    "hnsw_relaxed": "pgvector hnsw, relaxed_order",
    "hnsw_strict": "pgvector hnsw, strict_order",
}


def log(msg):
    print("[filtered.py] " + msg, file=sys.stderr, flush=True)


def attributes(name, rows):
    """cat and sub of every row (0-based row numbers)."""
    perm = np.random.default_rng(8).permutation(rows)
    if name == "glove":
        return perm % 1000, np.zeros(rows, dtype=np.int64)
    d = DATASETS[name][0]
    labels = ann.read_vecs(os.path.join(DATA, d, d + "_base_labels.ivecs"), rows, "<i4")
    return labels[:, 0].astype(np.int64), perm % 100


def matches(name, sel, cat, sub):
    """Boolean mask of the rows FILTERS[name][sel] keeps."""
    if name == "glove":
        lim = {"50": 500, "10": 100, "1": 10, "0.1": 1}[sel]
        return cat < lim
    if sel == "50":
        return cat < 5
    m = cat == 0
    if sel == "1":
        m &= sub < 10
    elif sel == "0.1":
        m &= sub == 0
    return m


def write_items_copy(path, vecs, cat, sub):
    """Binary COPY of rows (id int4, cat int4, sub int4, v vector)."""
    ann.write_copy_binary(path, vecs, ints=(("cat", cat), ("sub", sub)))


def cmd_prepare(a):
    d, metric = DATASETS[a.dataset]
    bpath = os.path.join(DATA, d, d + "_base.fvecs")
    qpath = os.path.join(DATA, d, d + "_query.fvecs")
    nbase, dim = ann.fvecs_info(bpath)
    rows = min(a.rows or nbase, nbase)
    base = ann.read_vecs(bpath, rows)
    queries = ann.read_vecs(qpath, a.queries)
    cat, sub = attributes(a.dataset, rows)
    os.makedirs(a.out, exist_ok=True)
    write_items_copy(os.path.join(a.out, "base.copy"), base, cat, sub)
    ann.write_copy_binary(os.path.join(a.out, "query.copy"), queries)
    if metric == "cosine":
        b64, q64 = ann._normalise(base), ann._normalise(queries)
    else:
        b64, q64 = base.astype(np.float64), queries.astype(np.float64)
    masks = {s: matches(a.dataset, s, cat, sub) for s in SELS}
    with open(os.path.join(a.out, "filters.tsv"), "w") as f:
        for s in SELS:
            f.write("%s\t%s\t%d\n" % (s, FILTERS[a.dataset][s], int(masks[s].sum())))
    truth = {s: [] for s in SELS}
    block = 50
    for start in range(0, q64.shape[0], block):
        q = q64[start:start + block]
        if metric == "cosine":
            dist = 1.0 - q @ b64.T
        else:
            dist = (np.einsum("ij,ij->i", b64, b64)[None, :] - 2.0 * (q @ b64.T)
                    + np.einsum("ij,ij->i", q, q)[:, None])
        for s in SELS:
            idx = np.flatnonzero(masks[s])
            sub_d = dist[:, idx]
            k = min(10, idx.size)
            # candidates by a partial sort, then exact order with ties by id
            cand = np.argpartition(sub_d, min(k + 32, idx.size) - 1, axis=1)[:, :min(k + 32, idx.size)]
            cd = np.take_along_axis(sub_d, cand, axis=1)
            ci = idx[cand]
            order = np.lexsort((ci, cd), axis=1)[:, :k]
            truth[s].extend(np.take_along_axis(ci, order, axis=1).tolist())
    with open(os.path.join(a.out, "truth.tsv"), "w") as f:
        for s in SELS:
            for qi, ids in enumerate(truth[s]):
                f.write("%s\t%d\t{%s}\n" % (s, qi + 1, ",".join(str(i + 1) for i in ids)))
    for name in ("filters.tsv", "truth.tsv"):
        os.chmod(os.path.join(a.out, name), 0o644)
    print(rows, dim, queries.shape[0], metric)


def _lines(path):
    try:
        with open(path) as f:
            return [json.loads(x) for x in f if x.strip()]
    except FileNotFoundError:
        return []


def _latest(path, tag):
    got = {}
    for r in _lines(path):
        if r.get("tag") == tag:
            got[(r["sel"], r["method"])] = r
    return got


def _all(path, tag):
    """Every line of TAG, grouped by point, oldest first."""
    got = {}
    for r in _lines(path):
        if r.get("tag") == tag:
            got.setdefault((r["sel"], r["method"]), []).append(r)
    return got


def _median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    h = len(xs) // 2
    return xs[h] if len(xs) % 2 else (xs[h - 1] + xs[h]) / 2.0


def cmd_missing(a):
    have = {} if a.force else _latest(a.jsonl, a.tag)
    out = []
    for p in a.points.split():
        sel, method = p.split(":")
        if (sel, method) not in have:
            out.append(p)
    print(" ".join(out))


def cmd_record(a):
    doc = json.loads(a.json)
    for item in a.pairs:
        k, _, v = item.partition("=")
        if k not in ("sel", "git_commit", "omen_so_sha256") and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", v):
            v = float(v) if "." in v else int(v)
        doc[k] = v
    with open(a.jsonl, "a") as f:
        f.write(json.dumps(doc) + "\n")


def cmd_plan(_a):
    nodes = []
    for line in sys.stdin:
        s = line.strip()
        if not s or s.startswith("QUERY PLAN") or set(s) <= set("-"):
            continue
        first = not nodes
        if s.startswith("->"):
            s = s[2:].strip()
        elif not first:
            continue
        for kw in (" using ", " on "):
            if kw in s:
                head, _, rest = s.partition(kw)
                if kw == " using " or head.endswith("Index Scan"):
                    s = "%s (%s)" % (head, rest.split()[0])
                else:
                    s = head
                break
        nodes.append(s)
    print(" > ".join(nodes))


def _f(x, nd):
    if x is None:
        return "-"
    if nd == 0:
        return "{:,.0f}".format(x)
    return "%.*f" % (nd, x)


def cmd_table(a):
    got = _all(a.jsonl, a.tag)
    if not got:
        raise SystemExit("no results for %s in %s" % (a.tag, a.jsonl))
    r0 = next(iter(got.values()))[-1]
    nruns = sorted({len(v) for v in got.values()})
    loads = [r["load1"] for v in got.values() for r in v if r.get("load1") is not None]
    print("**%s** (%s rows, %s-d, %s), %s queries, LIMIT 10; m = %s, ef_construction = %s, "
          "omen.ef_search = hnsw.ef_search = %s; omen %s (%s %s), pgvector %s, PostgreSQL %s, "
          "%s x %s; %s run(s) of bench/filtered, %s timed passes each; load average %s-%s"
          % (r0["dataset"], "{:,}".format(int(r0["rows"])), r0["dims"], r0["metric"],
             r0["queries"], r0["m"], r0["efc"], r0["ef"], r0["omen_version"],
             r0["build_source"], r0["git_commit"], r0["pgvector_version"],
             r0["pg_version"].split()[0], r0["cpu"], r0["nproc"],
             "/".join(str(n) for n in nruns), r0["runs"], min(loads), max(loads)))
    print()
    print("| filter | method | plan | rows avg | rows min | recall@10 | tie-aware | p50 us | mean us |")
    print("|---|---|---|--:|--:|--:|--:|--:|--:|")
    for s in SELS:
        for m in METHOD_LABEL:
            rs = got.get((s, m))
            if not rs:
                continue
            r = rs[-1]
            filt = "%s%% `%s` (%s rows)" % (s, r["filter"], "{:,}".format(int(r["matching"])))
            plans = {x.get("plan_custom", "") for x in rs}
            plan = " / ".join(sorted(plans))
            if r.get("plan_generic") and r["plan_generic"] != r.get("plan_custom"):
                plan += "; generic: " + r["plan_generic"]
            print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |"
                  % (filt, METHOD_LABEL[m], plan,
                     _f(_median([x["rows_avg"] for x in rs]), 2),
                     min(x["rows_min"] for x in rs),
                     _f(_median([x["recall"] for x in rs]), 3),
                     _f(_median([x["recall_tie_aware"] for x in rs]), 3),
                     _f(_median([x["p50_us"] for x in rs]), 0),
                     _f(_median([x["mean_us"] for x in rs]), 0)))
    print()
    print("rows min: the fewest rows any query got in any run.  recall@10: share of the exact "
          "filtered top-10 ids returned; tie-aware: share of returned rows at most as far as "
          "the exact 10th (equal-distance ties count as found).  p50 us: median single-query "
          "time of a run; mean us: mean per query of a pass, median of the passes; both then "
          "the median over the runs.")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    p.add_argument("--out", required=True)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--rows", type=int, default=0)
    p = sub.add_parser("missing")
    p.add_argument("--jsonl", required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--points", required=True)
    p.add_argument("--force", action="store_true")
    p = sub.add_parser("record")
    p.add_argument("--jsonl", required=True)
    p.add_argument("--json", required=True)
    p.add_argument("pairs", nargs="*")
    sub.add_parser("plan")
    p = sub.add_parser("table")
    p.add_argument("--jsonl", required=True)
    p.add_argument("--tag", required=True)
    a = ap.parse_args(argv)
    {"prepare": cmd_prepare, "missing": cmd_missing, "record": cmd_record,
     "plan": cmd_plan, "table": cmd_table}[a.cmd](a)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/python3
"""bench/ann.py - data and bookkeeping helper of bench/ann (numpy only).

Run it with Debian's /usr/bin/python3 (the python3 first on PATH may be a
pyenv one without numpy).  Subcommands:

  info FILE.fvecs
      print "COUNT DIM" of a TEXMEX .fvecs file.

  prepare --out DIR --metric M --rows N --queries Q
          (--base B.fvecs --query Q.fvecs [--gt GT.ivecs] | --generate N,D
           [--clusters K] [--seed S]) [--cache DIR] [--k 10]
      write DIR/base.copy and DIR/query.copy (PostgreSQL binary COPY files
      for a table (id int, v vector), ids 1-based = file row + 1) and
      DIR/truth.tsv ("qid<TAB>{id,...}", the exact top-k base ids of every
      query, 1-based).  The ground truth comes from GT.ivecs when all base
      rows are used and the metric is the file's; otherwise it is computed
      by brute force with numpy, in blocks, and cached in --cache.  Prints
      "ROWS DIMS QUERIES GT-SOURCE" on stdout.

  missing [--key ef|clients] FILE "EF..." [--force]
      print the ef_search values (or numbers of pgbench clients) of the
      list that FILE (a result file of one dataset/AM/parameter set) does
      not hold yet.

  record [--jsonl J] [--key ef|clients] [--ef EF] FILE KEY=VALUE...
      merge measurements into FILE: without --ef into its top level (build
      figures, settings, machine); with --ef into FILE[key][EF], and then
      also append one flat line (top level + that ef or client count) to J.

  table FILE...
      print the markdown table of one dataset from its result files (one per
      index variant: omen ones first, then pgvector).

  pgbench FILE...
      print the pgbench throughput table of result files of --pgbench runs.

  growth FILE...
      print the recall-vs-size table from result files of several sizes.

Generated data (--generate N,D): a Gaussian mixture of K clusters (default
max(8, N // 2000), at most 256).  Cluster centres are N(0, 1) in D dims;
each cluster has its own random rotation R_c (QR of a Gaussian matrix) and
an anisotropic spread: axis i has standard deviation s_c * 0.9**(i * 32/D)
before rotation (about 32 "strong" directions whatever D is), with s_c
uniform in [0.15, 0.35].  Points of cluster c are centre_c + (z * sd) @ R_c
with z ~ N(0, I).  Cluster sizes follow a Dirichlet(2) draw, so clusters
differ in size.  Queries are fresh draws from the same mixture.  Everything
depends only on (N, D, K, seed); the vectors and their ground truth are
cached under --cache.
"""

import argparse
import datetime
import hashlib
import json
import os
import struct
import sys

import numpy as np

# ---------------------------------------------------------------- files


def fvecs_info(path):
    size = os.path.getsize(path)
    if size == 0:
        return 0, 0
    with open(path, "rb") as f:
        (dim,) = struct.unpack("<i", f.read(4))
    if dim <= 0:
        raise ValueError("%s: bad dimension %d" % (path, dim))
    rec = 4 + 4 * dim
    if size % rec:
        raise ValueError("%s: size %d is not a multiple of %d" % (path, size, rec))
    return size // rec, dim


def read_vecs(path, count=None, dtype="<f4"):
    n, dim = fvecs_info(path)
    if count is None or count > n:
        count = n
    raw = np.fromfile(path, dtype="<i4", count=count * (dim + 1)).reshape(count, dim + 1)
    if count and not np.all(raw[:, 0] == dim):
        raise ValueError("%s: inconsistent record dimensions" % path)
    return np.ascontiguousarray(raw[:, 1:]).view(dtype).astype(dtype[1:], copy=False)


def write_vecs(path, arr):
    arr = np.ascontiguousarray(arr)
    n, dim = arr.shape
    out = np.empty((n, dim + 1), dtype="<i4")
    out[:, 0] = dim
    out[:, 1:] = arr.view("<i4") if arr.dtype.itemsize == 4 else arr
    tmp = path + ".tmp"
    out.tofile(tmp)
    os.replace(tmp, path)


def write_copy_binary(path, vecs, first_id=1, ints=()):
    """PostgreSQL binary COPY of rows (id int4, [int4 columns,] v vector):
    ints is a sequence of (name, array of n ints), one column each, between
    id and v.  pgvector's vector_recv reads int16 dim, int16 unused, then
    dim float4, all big-endian."""
    n, dim = vecs.shape
    fields = [("nf", ">i2"), ("l_id", ">i4"), ("id", ">i4")]
    for name, _ in ints:
        fields += [("l_" + name, ">i4"), (name, ">i4")]
    fields += [("l_v", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("v", ">f4", (dim,))]
    out = np.empty(n, dtype=np.dtype(fields))
    out["nf"] = 2 + len(ints)
    out["l_id"] = 4
    out["id"] = np.arange(first_id, first_id + n, dtype=np.int64)
    for name, values in ints:
        out["l_" + name] = 4
        out[name] = values
    out["l_v"] = 4 + 4 * dim
    out["dim"] = dim
    out["unused"] = 0
    out["v"] = vecs
    with open(path, "wb") as f:
        f.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
        out.tofile(f)
        f.write(struct.pack(">h", -1))
    os.chmod(path, 0o644)


# ---------------------------------------------------------------- ground truth


def _normalise(x):
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


def _exact(base64, q64, cand, metric):
    """Exact float64 distances of query rows q64 to their candidates."""
    b = base64[cand]                          # (nq, c, d)
    if metric == "l2":
        diff = b - q64[:, None, :]
        return np.einsum("ijk,ijk->ij", diff, diff)
    if metric == "l1":
        return np.abs(b - q64[:, None, :]).sum(axis=2)
    dots = np.einsum("ijk,ik->ij", b, q64)
    return 1.0 - dots if metric == "cosine" else -dots


def groundtruth(base, queries, k, metric, mem_mb=512, log=None):
    """Exact top-k base row numbers (0-based) per query, ties by smaller id.

    Candidates (k + 32 per query) are chosen with float32 arithmetic
    (a BLAS product for l2/cosine/ip, blocked differences for l1), then
    re-ranked exactly in float64."""
    n, nq = base.shape[0], queries.shape[0]
    k = min(k, n)
    c = min(n, k + 32)
    if metric == "cosine":
        b64, q64 = _normalise(base), _normalise(queries)
    else:
        b64, q64 = base.astype(np.float64), queries.astype(np.float64)
    b32, q32 = b64.astype(np.float32), q64.astype(np.float32)
    bnorm = np.einsum("ij,ij->i", b32, b32) if metric == "l2" else None
    if metric == "l1":
        # (block, n, d) float32 differences must fit in mem_mb
        block = max(1, int(mem_mb * 2**20 // (4 * n * base.shape[1])))
    else:
        block = max(1, int(mem_mb * 2**20 // (4 * 3 * n)))
    ids = np.empty((nq, k), dtype=np.int64)
    for s in range(0, nq, block):
        q = q32[s:s + block]
        if metric == "l1":
            d = np.empty((q.shape[0], n), dtype=np.float32)
            step = max(1, int(mem_mb * 2**20 // (4 * q.shape[0] * base.shape[1])))
            for j in range(0, n, step):
                d[:, j:j + step] = np.abs(b32[None, j:j + step, :] - q[:, None, :]).sum(axis=2)
        else:
            d = q @ b32.T
            if metric == "l2":
                d = bnorm[None, :] - 2.0 * d
            else:
                d = -d                     # cosine and ip: larger dot = nearer
        if c < n:
            cand = np.argpartition(d, c - 1, axis=1)[:, :c]
        else:
            cand = np.broadcast_to(np.arange(n), (q.shape[0], n)).copy()
        del d
        ex = _exact(b64, q64[s:s + block], cand, metric)
        order = np.lexsort((cand, ex), axis=1)[:, :k]
        ids[s:s + block] = np.take_along_axis(cand, order, axis=1)
        if log and nq > block:
            log("ground truth: %d/%d queries" % (min(nq, s + block), nq))
    return ids


# ---------------------------------------------------------------- generated data


def generate(n, dim, clusters, seed, count_queries):
    rng = np.random.default_rng(seed)
    k = clusters
    centres = rng.standard_normal((k, dim)).astype(np.float64)
    spread = rng.uniform(0.15, 0.35, size=k)
    axes = 0.9 ** (np.arange(dim) * (32.0 / dim))
    rots = []
    for _ in range(k):
        qm, r = np.linalg.qr(rng.standard_normal((dim, dim)))
        rots.append(qm * np.sign(np.diag(r)))      # Haar-distributed rotation
    weights = rng.dirichlet(np.full(k, 2.0))

    def draw(m):
        lab = rng.choice(k, size=m, p=weights)
        out = np.empty((m, dim), dtype=np.float32)
        for c in range(k):
            idx = np.flatnonzero(lab == c)
            if idx.size == 0:
                continue
            z = rng.standard_normal((idx.size, dim)) * (spread[c] * axes)
            out[idx] = (centres[c] + z @ rots[c].T).astype(np.float32)
        return out

    return draw(n), draw(count_queries)


# ---------------------------------------------------------------- prepare


def log(msg):
    print("[ann.py] " + msg, file=sys.stderr, flush=True)


def cmd_prepare(a):
    os.makedirs(a.out, exist_ok=True)
    if a.cache:
        os.makedirs(a.cache, exist_ok=True)
    gt_source = None
    if a.generate:
        n, dim = (int(x) for x in a.generate.lower().replace("x", ",").split(","))
        clusters = a.clusters or min(256, max(8, n // 2000))
        tag = "gen-%dx%d-k%d-s%d-q%d" % (n, dim, clusters, a.seed, a.queries)
        bpath = os.path.join(a.cache, tag + "_base.fvecs") if a.cache else None
        qpath = os.path.join(a.cache, tag + "_query.fvecs") if a.cache else None
        if bpath and os.path.exists(bpath) and os.path.exists(qpath):
            base, queries = read_vecs(bpath), read_vecs(qpath)
        else:
            log("generating %d x %d (%d clusters, seed %d)" % (n, dim, clusters, a.seed))
            base, queries = generate(n, dim, clusters, a.seed, a.queries)
            if bpath:
                write_vecs(bpath, base)
                write_vecs(qpath, queries)
        a.rows = min(a.rows or n, n)
        base = base[:a.rows]
        key = "%s-n%d-%s" % (tag, a.rows, a.metric)
    else:
        nbase, dim = fvecs_info(a.base)
        nq, qdim = fvecs_info(a.query)
        if qdim != dim:
            raise SystemExit("base has %d dims, queries %d" % (dim, qdim))
        a.rows = min(a.rows or nbase, nbase)
        base = read_vecs(a.base, a.rows)
        queries = read_vecs(a.query, min(a.queries, nq))
        full = a.rows == nbase
        if a.gt and full and a.gt_metric == a.metric:
            gt = read_vecs(a.gt, queries.shape[0], "<i4")
            if gt.shape[1] < a.k:
                raise SystemExit("%s has only %d neighbours per query" % (a.gt, gt.shape[1]))
            truth = gt[:, :a.k].astype(np.int64)
            gt_source = "file"
        h = hashlib.sha1(("%s|%s|%d|%d" % (os.path.realpath(a.base), os.path.getsize(a.base),
                                           a.rows, queries.shape[0])).encode()).hexdigest()[:10]
        key = "%s-n%d-q%d-%s-%s" % (os.path.basename(a.base).replace("_base.fvecs", ""),
                                     a.rows, queries.shape[0], a.metric, h)
    queries = queries[:a.queries]
    if gt_source is None:
        cpath = os.path.join(a.cache, key + "_gt%d.ivecs" % a.k) if a.cache else None
        if cpath and os.path.exists(cpath):
            truth = read_vecs(cpath, None, "<i4").astype(np.int64)
            gt_source = "cache"
        else:
            log("computing ground truth: %d queries over %d x %d (%s), numpy brute force"
                % (queries.shape[0], base.shape[0], base.shape[1], a.metric))
            truth = groundtruth(base, queries, a.k, a.metric, log=log)
            if cpath:
                write_vecs(cpath, truth.astype(np.int32))
            gt_source = "numpy"
    write_copy_binary(os.path.join(a.out, "base.copy"), base)
    write_copy_binary(os.path.join(a.out, "query.copy"), queries)
    tpath = os.path.join(a.out, "truth.tsv")
    with open(tpath, "w") as f:
        for i, row in enumerate(truth):
            f.write("%d\t{%s}\n" % (i + 1, ",".join(str(int(x) + 1) for x in row)))
    os.chmod(tpath, 0o644)
    print(base.shape[0], base.shape[1], queries.shape[0], gt_source)


# ---------------------------------------------------------------- results


def _load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


STR_KEYS = {"git_commit", "pg_version", "pgvector_version", "omen_version", "date",
            "shared_buffers", "maintenance_work_mem", "cpu", "dataset",
            "omen_so_sha256", "build_source"}


def _value(s, key=""):
    if key in STR_KEYS:
        return s
    if s == "":
        return None
    if s in ("true", "false"):
        return s == "true"
    if s[:1] in "{[":
        return json.loads(s)
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    return s


def cmd_missing(a):
    have = {} if a.force else _load(a.file).get(a.key, {})
    print(" ".join(e for e in a.efs.split() if e not in have))


def cmd_record(a):
    doc = _load(a.file)
    kv = {}
    for item in a.pairs:
        k, _, v = item.partition("=")
        kv[k] = _value(v, k)
    if a.ef is None:
        doc.update(kv)
    else:
        doc.setdefault(a.key, {})[str(a.ef)] = kv
        if a.jsonl:
            flat = {k: v for k, v in doc.items() if k not in ("ef", "clients")}
            flat[a.key] = int(a.ef)
            flat.update(kv)
            with open(a.jsonl, "a") as f:
                f.write(json.dumps(flat, sort_keys=False) + "\n")
    doc["updated"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    tmp = a.file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, a.file)


LABEL = {"omen": "omen", "pgvector": "pgvector hnsw"}


def label(d):
    """Column name of a result file: its AM, and quantizer if one was given."""
    v = d.get("variant") or d.get("am")
    if v.startswith("omen-"):
        return "omen " + v[5:]
    return LABEL.get(v, v)


def _fmt(x, nd):
    if x is None:
        return "-"
    if nd == 0:
        return "{:,.0f}".format(x)
    return "%.*f" % (nd, x)


def _ratio(p, o):
    if p is None or o is None or o == 0:
        return ""
    return "%.2f" % (p / o)


def _runs(docs):
    r = sorted({d.get("runs") for d in docs if d.get("runs") is not None})
    return "/".join(str(x) for x in r) or "?"


def cmd_table(a):
    docs = [_load(p) for p in a.files]
    docs = [d for d in docs if d]
    if not docs:
        raise SystemExit("no results")
    d0 = docs[0]
    both = len(docs) == 2 and docs[1].get("am") == "pgvector"
    print("**%s**: %s x %s, %s, %s queries (ground truth: %s); m = %s, ef_construction = %s; "
          "median of %s runs" % (d0["dataset"], "{:,}".format(d0["rows"]), d0["dims"],
                                 d0["metric"], "{:,}".format(d0["queries"]), d0.get("gt_source"),
                                 d0["m"], d0["efc"], _runs(docs)))
    print()
    head = "| | " + " | ".join(label(d) for d in docs)
    if both:
        head += " | pgvector / omen"
    print(head + " |")
    print("|---|" + "--:|" * (len(docs) + (1 if both else 0)))

    def row(name, vals, nd, ratio=True, marks=None):
        cells = [_fmt(v, nd) + (marks[i] if marks else "") for i, v in enumerate(vals)]
        if both:
            cells.append(_ratio(vals[1], vals[0]) if ratio else "")
        print("| %s | %s |" % (name, " | ".join(cells)))

    row("build s", [d.get("build_s") for d in docs], 1)
    row("build vec/s", [d.get("build_vec_per_s") for d in docs], 0, False)
    row("index size MiB", [(d.get("size_bytes") or 0) / 2**20 for d in docs], 1)
    efs = sorted({int(e) for d in docs for e in d.get("ef", {})})
    if a.ef:
        efs = [int(e) for e in a.ef.split()]
    forced = False
    for e in efs:
        rs = [d.get("ef", {}).get(str(e), {}) for d in docs]
        row("ef_search %d: recall@10" % e, [r.get("recall") for r in rs], 3, False)
        mark = ["*" if r.get("forced_index") else "" for r in rs]
        forced = forced or any(mark)
        row("ef_search %d: us/query" % e, [r.get("us_per_query") for r in rs], 0, marks=mark)
        if a.p50:
            row("ef_search %d: p50 us" % e, [r.get("p50_us") for r in rs], 0, marks=mark)
    notes = []
    if both:
        notes.append("pgvector / omen: ratio of build time, size and time per query; above 1 "
                     "means omen is faster or smaller.")
    if a.p50:
        notes.append("us/query: mean time per query of a pass, median of the passes; "
                     "p50 us: median single-query time over all timed passes.")
    if forced:
        notes.append("\\* the planner preferred a sequential scan at this ef_search; measured "
                     "with --force-index (enable_seqscan = off for the query loop).")
    if notes:
        print()
        print(" ".join(notes))


def cmd_pgbench(a):
    docs = [d for d in (_load(p) for p in a.files) if d]
    if not docs:
        raise SystemExit("no results")
    d0 = docs[0]
    clients = sorted({int(c) for d in docs for c in d.get("clients", {})})
    efs = sorted({r.get("ef_search") for d in docs for r in d.get("clients", {}).values()})
    print("**%s pgbench**: %s x %s, %s; m = %s, ef_construction = %s, ef_search = %s; "
          "one 10-NN query of a random query vector per transaction, %s s per client count"
          % (d0["dataset"], "{:,}".format(d0["rows"]), d0["dims"], d0["metric"], d0["m"],
             d0["efc"], "/".join(str(e) for e in efs),
             "/".join(sorted({str(r.get("seconds")) for d in docs
                              for r in d.get("clients", {}).values()}))))
    print()
    print("| index | " + " | ".join("TPS, %d client%s" % (c, "s" if c > 1 else "")
                                   for c in clients) + " |")
    print("|---|" + "--:|" * len(clients))
    for d in docs:
        cells = []
        for c in clients:
            r = d.get("clients", {}).get(str(c), {})
            cells.append(_fmt(r.get("tps"), 0) + ("*" if r.get("forced_index") else ""))
        print("| %s | %s |" % (label(d), " | ".join(cells)))


def cmd_growth(a):
    docs = [d for d in (_load(p) for p in a.files) if d]
    if not docs:
        raise SystemExit("no results")
    for ef in a.ef.split():
        _growth_table(docs, ef)
        print()


def _growth_table(docs, ef):
    sizes = sorted({d["rows"] for d in docs})
    by = {(d["rows"], d["am"]): d for d in docs}
    ams = [am for am in ("omen", "pgvector") if any(k[1] == am for k in by)]
    d0 = docs[0]
    print("**%s growth**: the first N rows, %s, %s queries, exact top-10 of each size; "
          "m = %s, ef_construction = %s, ef_search = %s; median of %s runs"
          % (d0["dataset"], d0["metric"], "{:,}".format(d0["queries"]), d0["m"], d0["efc"],
             ef, _runs(docs)))
    print()
    cols = []
    for am in ams:
        cols += ["%s recall@10" % LABEL[am]]
    for am in ams:
        cols += ["%s us/query" % LABEL[am]]
    for am in ams:
        cols += ["%s p50 us" % LABEL[am]]
    for am in ams:
        cols += ["%s build s" % LABEL[am]]
    print("| rows | " + " | ".join(cols) + " |")
    print("|--:|" + "--:|" * len(cols))
    for n in sizes:
        cells = []
        for what, nd in (("recall", 3), ("us_per_query", 0), ("p50_us", 0), ("build_s", 1)):
            for am in ams:
                d = by.get((n, am), {})
                r = d.get("ef", {}).get(str(ef), {})
                v = d.get("build_s") if what == "build_s" else r.get(what)
                cells.append(_fmt(v, nd) + ("*" if what == "us_per_query" and r.get("forced_index") else ""))
        print("| {:,} | ".format(n) + " | ".join(cells) + " |")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("info")
    p.add_argument("file")
    p = sub.add_parser("prepare")
    p.add_argument("--out", required=True)
    p.add_argument("--metric", required=True, choices=["l2", "cosine", "ip", "l1"])
    p.add_argument("--gt-metric", help="metric of --gt (default: --metric)")
    p.add_argument("--rows", type=int, default=0)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--base")
    p.add_argument("--query")
    p.add_argument("--gt")
    p.add_argument("--generate")
    p.add_argument("--clusters", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cache")
    p.add_argument("--k", type=int, default=10)
    p = sub.add_parser("missing")
    p.add_argument("--key", default="ef", choices=["ef", "clients"])
    p.add_argument("file")
    p.add_argument("efs")
    p.add_argument("--force", action="store_true")
    p = sub.add_parser("record")
    p.add_argument("file")
    p.add_argument("--jsonl")
    p.add_argument("--key", default="ef", choices=["ef", "clients"])
    p.add_argument("--ef")
    p.add_argument("pairs", nargs="*")
    p = sub.add_parser("table")
    p.add_argument("files", nargs="+")
    p.add_argument("--ef")
    p.add_argument("--p50", action="store_true", help="also a row of median query times")
    p = sub.add_parser("pgbench")
    p.add_argument("files", nargs="+")
    p = sub.add_parser("growth")
    p.add_argument("files", nargs="+")
    p.add_argument("--ef", default="40")
    a = ap.parse_args(argv)
    if a.cmd == "info":
        print(*fvecs_info(a.file))
    elif a.cmd == "prepare":
        if a.generate is None and not (a.base and a.query):
            ap.error("prepare needs --base and --query, or --generate")
        a.gt_metric = a.gt_metric or a.metric
        cmd_prepare(a)
    elif a.cmd == "missing":
        cmd_missing(a)
    elif a.cmd == "record":
        cmd_record(a)
    elif a.cmd == "table":
        cmd_table(a)
    elif a.cmd == "pgbench":
        cmd_pgbench(a)
    elif a.cmd == "growth":
        cmd_growth(a)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

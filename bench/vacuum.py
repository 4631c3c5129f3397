#!/usr/bin/python3
"""bench/vacuum.py - data, ground truth and tables of bench/vacuum (numpy).

Run it with Debian's /usr/bin/python3.  It reuses bench/ann.py's readers,
binary COPY writer and exact ground truth.  Subcommands:

  prepare --base B.fvecs --query Q.fvecs [--gt GT.ivecs] --out DIR
          --queries Q [--rows N] [--fractions "10 50"] [--seed S] [--cache DIR]
      write DIR/base.copy and DIR/query.copy (binary COPY of (id int,
      v vector), ids 1-based = file row + 1), DIR/truth_all.tsv (exact
      cosine top-10 ids of every query over all rows) and, per fraction F
      in percent, DIR/gone_F.tsv (the ids to delete: the first F% of a
      permutation drawn with numpy's default_rng(seed + F)) and
      DIR/truth_F.tsv (the exact top-10 over the rows that remain).
      Ground truth of subsets is computed by numpy and cached in --cache.
      Prints "ROWS DIMS QUERIES GT-SOURCE".

  record FILE.jsonl KEY=VALUE...
      append one JSON line; a VALUE that parses as JSON is taken as such,
      any other as a string.

  done FILE.jsonl STEP KEY=VALUE...
      exit 0 if FILE holds a line of STEP with these settings, else 1.

  table FILE.jsonl [KEY=VALUE...]
      print the markdown tables of the latest result of each step with
      these settings.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ann  # noqa: E402  (bench/ann.py)

K = 10


def log(msg):
    print("[vacuum.py] " + msg, file=sys.stderr, flush=True)


def write_truth(path, ids):
    """truth file: "qid<TAB>{id,...}", ids 1-based"""
    with open(path, "w") as f:
        for i, row in enumerate(ids):
            f.write("%d\t{%s}\n" % (i + 1, ",".join(str(int(x) + 1) for x in row)))
    os.chmod(path, 0o644)


def cached_truth(cache, key, base, queries, log_fn):
    """exact top-K row numbers (0-based into base), cached as .ivecs"""
    path = os.path.join(cache, key + ".ivecs") if cache else None
    if path and os.path.exists(path):
        return ann.read_vecs(path, None, "<i4").astype(np.int64), "cache"
    log_fn("ground truth %s: %d queries over %d rows (numpy)" % (key, queries.shape[0], base.shape[0]))
    truth = ann.groundtruth(base, queries, K, "cosine", log=log_fn)
    if path:
        ann.write_vecs(path, truth.astype(np.int32))
    return truth, "numpy"


def cmd_prepare(a):
    os.makedirs(a.out, exist_ok=True)
    if a.cache:
        os.makedirs(a.cache, exist_ok=True)
    nbase, _ = ann.fvecs_info(a.base)
    rows = min(a.rows or nbase, nbase)
    base = ann.read_vecs(a.base, rows)
    nq, _ = ann.fvecs_info(a.query)
    queries = ann.read_vecs(a.query, min(a.queries, nq))
    tag = "vacuum-%s-n%d-q%d" % (os.path.basename(a.base).replace("_base.fvecs", ""),
                                 rows, queries.shape[0])
    if a.gt and rows == nbase:
        truth = ann.read_vecs(a.gt, queries.shape[0], "<i4")[:, :K].astype(np.int64)
        source = "file"
    else:
        truth, source = cached_truth(a.cache, tag + "-all", base, queries, log)
    write_truth(os.path.join(a.out, "truth_all.tsv"), truth)
    for frac in a.fractions.split():
        f = int(frac)
        rng = np.random.default_rng(a.seed + f)
        gone = np.sort(rng.permutation(rows)[:round(rows * f / 100)])
        keep = np.setdiff1d(np.arange(rows), gone)
        with open(os.path.join(a.out, "gone_%d.tsv" % f), "w") as fh:
            fh.write("".join("%d\n" % (i + 1) for i in gone))
        os.chmod(os.path.join(a.out, "gone_%d.tsv" % f), 0o644)
        t, src = cached_truth(a.cache, "%s-del%d-s%d" % (tag, f, a.seed), base[keep], queries, log)
        write_truth(os.path.join(a.out, "truth_%d.tsv" % f), keep[t])
        if src == "numpy":
            source = "numpy" if source != "file" else "file+numpy"
    ann.write_copy_binary(os.path.join(a.out, "base.copy"), base)
    ann.write_copy_binary(os.path.join(a.out, "query.copy"), queries)
    print(rows, base.shape[1], queries.shape[0], source)


# ---------------------------------------------------------------- results


def parse_pairs(pairs):
    out = {}
    for item in pairs:
        k, _, v = item.partition("=")
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def cmd_record(a):
    with open(a.file, "a") as f:
        f.write(json.dumps(parse_pairs(a.pairs)) + "\n")


def cmd_done(a):
    want = parse_pairs(a.pairs)
    try:
        with open(a.file) as f:
            for line in f:
                d = json.loads(line) if line.strip() else {}
                if d.get("step") == a.step and all(d.get(k) == v for k, v in want.items()):
                    sys.exit(0)
    except FileNotFoundError:
        pass
    sys.exit(1)


# ---------------------------------------------------------------- tables


def mib(b):
    return "%.1f" % (b / 1048576.0)


def med(xs):
    return float(np.median(xs)) if xs else None


def cmd_table(a):
    want = parse_pairs(a.pairs)
    latest = {}
    with open(a.file) as f:
        for line in f:
            line = line.strip()
            if line:
                d = json.loads(line)
                if all(d.get(k) == v for k, v in want.items()):
                    latest[d["step"]] = d
    dels = [latest[s] for s in sorted(latest) if s.startswith("delete")]
    if dels:
        d0 = dels[0]
        print("**Delete and VACUUM** (%s, %s rows, %s queries, m %s, ef_construction %s, "
              "ef_search %s; recall@10 against the exact top-10 of the remaining rows; "
              "fresh: %d builds on exactly the remaining rows)"
              % (d0["dataset"], "{:,}".format(d0["rows"]), d0["queries"], d0["m"], d0["efc"],
                 d0["ef_search"], len(d0["fresh"])))
        print()
        print("| deleted | rows left | VACUUM s | heap-only VACUUM s | fresh build s (median) "
              "| VACUUM / build | recall vacuumed | recall fresh median [min, max] "
              "| size vacuumed / fresh MiB | unreachable after VACUUM | load |")
        print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--|")
        for d in dels:
            fr = d["fresh"]
            bs = med([x["build_s"] for x in fr])
            rs = [x["recall"] for x in fr]
            inside = min(rs) <= d["recall"] <= max(rs)
            print("| %d%% | %s | %.1f | %.2f | %.1f | %.2f | %.4f%s | %.4f [%.4f, %.4f] | %s / %s | %s | %s |"
                  % (d["fraction"], "{:,}".format(d["rows_left"]), d["vacuum_s"],
                     d["heap_vacuum_s"], bs, d["vacuum_s"] / bs, d["recall"],
                     "" if inside else (" (below)" if d["recall"] < min(rs) else " (above)"),
                     med(rs), min(rs), max(rs), mib(d["size_bytes"]),
                     mib(med([x["size_bytes"] for x in fr])), d["verify"]["unreachable"],
                     d["load"]))
        print()
    c = latest.get("cycles")
    if c:
        print("**Delete/insert/VACUUM cycles** (%s, %s rows; each cycle deletes %d%% of the rows "
              "at random, VACUUMs, inserts the deleted vectors again under new ids, VACUUMs)"
              % (c["dataset"], "{:,}".format(c["rows"]), c["fraction"]))
        print()
        print("| cycle | rows | VACUUM after delete s | INSERT s | VACUUM after insert s "
              "| pg_relation_size MiB | pages | elements | deleted elements |")
        print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        b = c["start"]
        print("| 0 (built) | %s | | | | %s | %s | %s | %s |"
              % ("{:,}".format(c["rows"]), mib(b["size_bytes"]), b["pages"], b["elements"],
                 b["deleted_elements"]))
        for x in c["cycle"]:
            print("| %d | %s | %.1f | %.1f | %.2f | %s | %s | %s | %s |"
                  % (x["cycle"], "{:,}".format(x["rows"]), x["vacuum1_s"], x["insert_s"],
                     x["vacuum2_s"], mib(x["size_bytes"]), x["pages"], x["elements"],
                     x["deleted_elements"]))
        e = c["end"]
        f = c["fresh"]
        print()
        print("After %d cycles: recall@10 at ef_search %s %.4f (fresh build of the final rows: "
              "%.4f, built in %.1f s); size %s MiB against %s MiB fresh (%.2fx); "
              "omen_verify: %s unreachable; load %s."
              % (len(c["cycle"]), c["ef_search"], e["recall"], f["recall"], f["build_s"],
                 mib(e["size_bytes"]), mib(f["size_bytes"]), e["size_bytes"] / f["size_bytes"],
                 e["verify"]["unreachable"], c["load"]))
        print()
    d = dels[0] if dels else c
    if d:
        print("%s, omen %s (%s %s, %s), PostgreSQL %s, pgvector %s; %s x %s CPUs."
              % (d["date"][:10], d["omen_version"], d["build_source"], d["git_commit"], d["simd"],
                 d["pg_version"], d["pgvector_version"], d["cpu"], d["nproc"]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("prepare")
    s.add_argument("--base", required=True)
    s.add_argument("--query", required=True)
    s.add_argument("--gt")
    s.add_argument("--out", required=True)
    s.add_argument("--queries", type=int, default=1000)
    s.add_argument("--rows", type=int)
    s.add_argument("--fractions", default="10 50")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--cache")
    s = sub.add_parser("record")
    s.add_argument("file")
    s.add_argument("pairs", nargs="*")
    s = sub.add_parser("done")
    s.add_argument("file")
    s.add_argument("step")
    s.add_argument("pairs", nargs="*")
    s = sub.add_parser("table")
    s.add_argument("file")
    s.add_argument("pairs", nargs="*")
    a = p.parse_args()
    {"prepare": cmd_prepare, "record": cmd_record, "done": cmd_done, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    main()

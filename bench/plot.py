#!/usr/bin/python3
"""bench/plot.py - recall-vs-QPS plots and the markdown summary of bench/suite.

Usage: bench/plot.py [--results DIR] [--plots DIR] [--summary FILE]
       (run by `bench/suite report`; a few seconds)

Reads DIR/results.jsonl (bench/ann's JSON lines; default
bench/results/suite), keeping for every dataset, index variant, build
setting and ef_search the last line written, and draws for each dataset
PLOTS/<dataset>.png (default bench/plots): recall@10 (x) against queries
per second = 1e6 / us_per_query (y, log scale), one curve per (index,
quantizer, build processes), pgvector's HNSW as the black reference
curves, as ann-benchmarks draws them.  Queries per second here is one
backend's server-side rate (no client round trip), not a throughput.

With --summary FILE it also writes the markdown summary: the machine and
versions, per dataset the build table and the recall / time table, the
pgbench table (DIR/*pgbench.json lines of results.jsonl), the INSERT rates
(DIR/insert.jsonl) and the markdown output of the other steps
(DIR/filtered-*.md, DIR/build-*.md).

Needs Debian's python3-matplotlib (bench/suite installs it when missing).
"""

import argparse
import glob
import json
import os
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
DATASETS = ["bigann-10k", "fashion-mnist", "glove"]


def read_jsonl(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out


def latest(lines, key):
    """The last line for each key(line), in first-seen order."""
    by = {}
    for d in lines:
        by[key(d)] = d
    return list(by.values())


def variant_label(d):
    v = d.get("variant") or d.get("am")
    if d.get("am") == "pgvector":
        name = "pgvector hnsw"
    elif v.startswith("omen-"):
        name = "omen " + v[5:]
    else:
        name = "omen"
    procs = int(d.get("workers") or 0) + 1
    return "%s, %d build process%s" % (name, procs, "es" if procs > 1 else "")


RANK = {"omen-none": 0, "omen-sq8": 1, "omen-bq": 2, "omen": 3}


def curve_key(d):
    return (d.get("am") != "pgvector", d.get("variant") or d.get("am"), int(d.get("workers") or 0))


def curve_order(k):
    """omen none, sq8, bq, then pgvector; 1 build process before 2"""
    return (not k[0], RANK.get(k[1], 9), k[1], k[2])


def ann_lines(results):
    lines = [d for d in read_jsonl(os.path.join(results, "results.jsonl"))
             if d.get("kind", "ann") == "ann" and "ef" in d]
    return latest(lines, lambda d: (d["dataset"], d.get("variant") or d["am"], d.get("workers", 0),
                                    d["m"], d["efc"], d["rows"], d["queries"], d["ef"]))


def group(lines):
    """dataset -> curve key -> [lines sorted by ef]"""
    out = {}
    for d in lines:
        out.setdefault(d["dataset"], {}).setdefault(curve_key(d), []).append(d)
    for curves in out.values():
        for k in curves:
            curves[k].sort(key=lambda d: d["ef"])
    return out


def ordered(datasets):
    return [d for d in DATASETS if d in datasets] + sorted(d for d in datasets if d not in DATASETS)


# ---------------------------------------------------------------- plots

STYLE = {"omen-none": "tab:blue", "omen-sq8": "tab:orange", "omen-bq": "tab:green",
         "omen": "tab:blue", "pgvector": "black"}


def plot(dataset, curves, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=100)
    d0 = None
    for key in sorted(curves, key=curve_order):
        pts = curves[key]
        d0 = d0 or pts[0]
        is_pgv = not key[0]
        x = [p["recall"] for p in pts]
        y = [1e6 / p["us_per_query"] for p in pts]
        ax.plot(x, y, marker="o" if key[2] == 0 else "s", markersize=4,
                linestyle="-" if key[2] == 0 else "--",
                linewidth=2.2 if is_pgv else 1.5,
                color=STYLE.get(key[1], None), label=variant_label(pts[0]))
        if is_pgv and key[2] == 0:
            for p, xi, yi in zip(pts, x, y):
                ax.annotate("ef %d" % p["ef"], (xi, yi), textcoords="offset points",
                            xytext=(4, 4), fontsize=7, color="0.3")
    ax.set_yscale("log")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries per second, one backend (1e6 / us per query; log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    commit = d0.get("git_commit", "?")
    ax.set_title("%s: %s x %d, %s, %d queries, m %d, efc %d\n%s x %s (%s), omen %s, pgvector %s"
                 % (dataset, "{:,}".format(d0["rows"]), d0["dims"], d0["metric"], d0["queries"],
                    d0["m"], d0["efc"], d0.get("cpu", "?"), d0.get("nproc", "?"),
                    d0.get("simd", "?"), commit[:7], d0.get("pgvector_version", "?")),
                 fontsize=9)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


# ---------------------------------------------------------------- summary


def fmt(x, nd=0):
    if x is None:
        return "-"
    return "{:,.{}f}".format(x, nd)


def load_range(lines):
    ls = [d["load1"] for d in lines if isinstance(d.get("load1"), (int, float))]
    return "%.1f-%.1f" % (min(ls), max(ls)) if ls else "?"


def summary(results, grouped, path):
    out = []
    w = out.append
    alla = [p for c in grouped.values() for pts in c.values() for p in pts]
    steps = read_jsonl(os.path.join(results, "steps.jsonl"))
    d0 = alla[0] if alla else (steps[-1] if steps else {})
    commits = sorted({p.get("git_commit", "?") for p in alla})
    w("# bench/suite summary")
    w("")
    w("Machine: %s x %s (%s), PostgreSQL %s, pgvector %s; omen commit %s. "
      "Load average (1 min) during the measurements: %s."
      % (d0.get("cpu", "?"), d0.get("nproc", "?"), d0.get("simd", "?"),
         d0.get("pg_version", "?"), d0.get("pgvector_version", "?"),
         ", ".join(c[:7] for c in commits) or "?", load_range(alla)))
    if alla:
        w("Settings: shared_buffers %s, maintenance_work_mem %s, fsync on; m %s, "
          "ef_construction %s; time per query = server-side mean of a pass over the queries "
          "inside one backend, median of %s passes." % (
              d0.get("shared_buffers"), d0.get("maintenance_work_mem"), d0.get("m"),
              d0.get("efc"), d0.get("runs")))
    if steps:
        w("")
        w("| step | seconds | load average at start | at end |")
        w("|---|--:|---|---|")
        for s in latest(steps, lambda s: s["step"]):
            w("| %s%s | %s | %s | %s |" % (s["step"], "" if s.get("ok") else " (failed)",
                                          fmt(s.get("seconds"), 0), s.get("loadavg_start"),
                                          s.get("loadavg_end")))
    for ds in ordered(grouped):
        curves = grouped[ds]
        keys = sorted(curves, key=curve_order)
        p0 = curves[keys[0]][0]
        w("")
        w("## %s" % ds)
        w("")
        w("%s x %d, %s, %d queries; plot: `bench/plots/%s.png`."
          % ("{:,}".format(p0["rows"]), p0["dims"], p0["metric"], p0["queries"], ds))
        w("")
        w("| index | build s | build vec/s | size MiB |")
        w("|---|--:|--:|--:|")
        for k in keys:
            p = curves[k][-1]
            w("| %s | %s | %s | %s |" % (variant_label(p), fmt(p.get("build_s"), 1),
                                         fmt(p.get("build_vec_per_s")),
                                         fmt((p.get("size_bytes") or 0) / 2**20, 1)))
        efs = sorted({p["ef"] for k in keys for p in curves[k]})
        w("")
        w("recall@10 / us per query at ef_search:")
        w("")
        w("| index | " + " | ".join(str(e) for e in efs) + " |")
        w("|---|" + "--:|" * len(efs))
        for k in keys:
            by = {p["ef"]: p for p in curves[k]}
            cells = []
            for e in efs:
                p = by.get(e)
                cells.append("-" if p is None else "%.3f / %s%s" % (
                    p["recall"], fmt(p["us_per_query"]), "*" if p.get("forced_index") else ""))
            w("| %s | %s |" % (variant_label(curves[k][0]), " | ".join(cells)))
        if any(p.get("forced_index") for k in keys for p in curves[k]):
            w("")
            w("\\* the planner chose a sequential scan at this ef_search; measured with "
              "enable_seqscan = off (bench/ann --force-index).")
    pgb = [d for d in read_jsonl(os.path.join(results, "results.jsonl"))
           if d.get("kind") == "pgbench" and "clients" in d]
    pgb = latest(pgb, lambda d: (d["dataset"], d.get("variant"), d.get("workers", 0), d["clients"]))
    if pgb:
        clients = sorted({d["clients"] for d in pgb})
        w("")
        w("## pgbench throughput")
        w("")
        w("One 10-NN query per transaction (`ORDER BY v <op> (SELECT v FROM queries "
          "WHERE id = random) LIMIT 10`, simple protocol), ef_search %s, %s s per client count, "
          "pgbench threads min(clients, 2); TPS as pgbench reports it (without connection time)."
          % ("/".join(sorted({str(d.get("ef_search")) for d in pgb})),
             "/".join(sorted({str(d.get("seconds")) for d in pgb}))))
        w("")
        w("| dataset | index | " + " | ".join("TPS, %d client%s" % (c, "s" if c > 1 else "")
                                              for c in clients) + " |")
        w("|---|---|" + "--:|" * len(clients))
        rows = {}
        for d in pgb:
            rows.setdefault((d["dataset"], d.get("am") != "pgvector", d.get("variant")), {})[d["clients"]] = d
        for (ds, _, var), by in sorted(rows.items(), key=lambda kv: (ordered([kv[0][0]] + DATASETS).index(kv[0][0]), not kv[0][1])):
            any_d = next(iter(by.values()))
            w("| %s | %s | %s |" % (ds, variant_label(any_d).split(",")[0], " | ".join(
                fmt(by[c]["tps"]) + ("*" if by[c].get("forced_index") else "") if c in by else "-"
                for c in clients)))
    ins = latest(read_jsonl(os.path.join(results, "insert.jsonl")), lambda d: d.get("am"))
    if ins:
        i0 = ins[0]
        w("")
        w("## INSERT rates")
        w("")
        if "seconds" in i0:
            w("bench/insert: GloVe, %s rows indexed (m %s, ef_construction %s), then single-row "
              "transactions (%s rows) and 100-row INSERTs for %s s from 1 and 2 sessions; rows "
              "per second; fsync %s." % ("{:,}".format(i0["indexed_rows"]), i0["m"], i0["efc"],
                                         i0["single_rows"], i0["seconds"], i0.get("fsync")))
        else:
            w("bench/insert: GloVe, %s rows indexed (m %s, ef_construction %s), then the other "
              "10,000 inserted once each: %s in single-row transactions, then %s in 100-row "
              "INSERTs from 1 session and %s from 2; rows per second; recall@10 at ef_search 40 "
              "on 1,000 queries after the inserts and after a REINDEX; fsync %s."
              % ("{:,}".format(i0["indexed_rows"]), i0["m"], i0["efc"],
                 "{:,}".format(i0["single_rows"]), "{:,}".format(i0["batch_rows_per_phase"]),
                 "{:,}".format(i0["batch_rows_per_phase"]), i0.get("fsync")))
        w("")
        w("| index | 1 row per transaction | 100 rows, 1 session | 100 rows, 2 sessions "
          "| recall after | recall, fresh build |")
        w("|---|--:|--:|--:|--:|--:|")
        for d in ins:
            w("| %s | %s | %s | %s | %s | %s |" % (
                "pgvector hnsw" if d["am"] == "hnsw" else d["am"],
                fmt(d["single_row_per_s"]), fmt(d["batch100_1session_rows_per_s"]),
                fmt(d["batch100_2sessions_rows_per_s"]),
                "%.4f" % d["recall_after_ef40"] if "recall_after_ef40" in d else "-",
                "%.4f" % d["recall_fresh_ef40"] if "recall_fresh_ef40" in d else "-"))
    for pattern, title in (("filtered-*.md", "Filtered queries (bench/filtered)"),
                           ("build-*.md", "Builds (bench/build)")):
        files = sorted(glob.glob(os.path.join(results, pattern)))
        if files:
            w("")
            w("## " + title)
            for f in files:
                w("")
                w("`%s`:" % os.path.basename(f)[:-3])
                w("")
                with open(f) as fh:
                    w(fh.read().rstrip())
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(tmp, path)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=os.path.join(BENCH, "results", "suite"))
    ap.add_argument("--plots", default=os.path.join(BENCH, "plots"))
    ap.add_argument("--summary")
    a = ap.parse_args(argv)
    grouped = group(ann_lines(a.results))
    if not grouped:
        print("bench/plot.py: no bench/ann results in %s" % a.results, file=sys.stderr)
    os.makedirs(a.plots, exist_ok=True)
    for ds in ordered(grouped):
        path = os.path.join(a.plots, ds + ".png")
        plot(ds, grouped[ds], path)
        print("plot: %s" % path)
    if a.summary:
        summary(a.results, grouped, a.summary)
        print("summary: %s" % a.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

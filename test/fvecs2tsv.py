#!/usr/bin/env python3
"""Convert a TEXMEX .fvecs file into text rows for PostgreSQL's COPY.

Each output line is

    ID<TAB>[f1,f2,...,fd]

where the bracketed part is pgvector's text form of a `vector`.  IDs count
from --first-id (default 1) in file order: row 0 of the file gets ID 1, so
`id - 1` is the 0-based row number used by the .ivecs ground-truth files.
Floats are written with '%.9g', which reproduces every float32 exactly when
parsed back as float32 (9 significant digits suffice for binary32).

Usage:
    fvecs2tsv.py FILE.fvecs [--rows N] [--first-id K] [--no-id] [-o OUT]

    --rows N      convert only the first N vectors (default: all)
    --first-id K  ID of the first row (default 1; use 0 for 0-based IDs)
    --no-id       write only the vector column
    -o OUT        write to OUT instead of standard output

Load it with, for example:
    CREATE TABLE items (id int PRIMARY KEY, embedding vector(128));
    \\copy items FROM 'bigann_base.tsv'

Pure Python 3 (struct only); no numpy needed.
"""

import argparse
import struct
import sys


def convert(path, out, rows=None, first_id=1, with_id=True):
    """Write up to `rows` vectors of `path` to the text stream `out`.

    Returns the number of vectors written.  Every record must have the same
    dimension; a truncated or inconsistent file is an error.
    """
    n = 0
    dim = None
    with open(path, "rb") as f:
        while rows is None or n < rows:
            head = f.read(4)
            if not head:
                break
            if len(head) != 4:
                raise ValueError("%s: truncated record header at vector %d" % (path, n))
            (d,) = struct.unpack("<i", head)
            if d <= 0 or (dim is not None and d != dim):
                raise ValueError("%s: bad dimension %d at vector %d" % (path, d, n))
            dim = d
            body = f.read(4 * d)
            if len(body) != 4 * d:
                raise ValueError("%s: truncated vector %d" % (path, n))
            vals = struct.unpack("<%df" % d, body)
            text = "[" + ",".join(["%.9g" % v for v in vals]) + "]"
            if with_id:
                out.write("%d\t%s\n" % (first_id + n, text))
            else:
                out.write(text + "\n")
            n += 1
    if rows is not None and n < rows:
        raise ValueError("%s: asked for %d rows, file has %d" % (path, rows, n))
    return n


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Convert .fvecs to 'id<TAB>[f1,...]' lines for COPY.")
    p.add_argument("fvecs")
    p.add_argument("--rows", type=int, default=None,
                   help="only the first N vectors")
    p.add_argument("--first-id", type=int, default=1,
                   help="ID of the first row (default 1)")
    p.add_argument("--no-id", action="store_true",
                   help="write only the vector column")
    p.add_argument("-o", "--output", default="-",
                   help="output file (default: stdout)")
    args = p.parse_args(argv)
    if args.rows is not None and args.rows < 0:
        p.error("--rows must be >= 0")

    try:
        if args.output == "-":
            convert(args.fvecs, sys.stdout, args.rows, args.first_id, not args.no_id)
            sys.stdout.flush()
        else:
            with open(args.output, "w") as out:
                convert(args.fvecs, out, args.rows, args.first_id, not args.no_id)
    except BrokenPipeError:
        # the reader stopped early (e.g. `| head`): not an error
        sys.stderr.close()
        return 0
    except (OSError, ValueError) as e:
        print("fvecs2tsv: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Convert a TEXMEX .ivecs ground-truth file into rows for PostgreSQL's COPY.

Each output line is

    QUERY_ID<TAB>{id1,id2,...,idK}

with query ids counting from 1 in file order and neighbour ids made 1-based
(row r of the base file is id r + 1, as test/fvecs2tsv.py numbers rows),
keeping the first K neighbours of each query (default 10).

Usage: gt2tsv.py FILE.ivecs [K]
"""

import struct
import sys


def main():
    path = sys.argv[1]
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    with open(path, "rb") as f:
        qid = 0
        while True:
            head = f.read(4)
            if not head:
                break
            (n,) = struct.unpack("<i", head)
            ids = struct.unpack("<%di" % n, f.read(4 * n))
            qid += 1
            sys.stdout.write("%d\t{%s}\n" % (qid, ",".join(str(i + 1) for i in ids[:k])))


if __name__ == "__main__":
    main()

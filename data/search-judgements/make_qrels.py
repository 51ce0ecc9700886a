#!/usr/bin/env python3
"""Applies the judgement rules of judgements.txt to the catalogs and writes
qrels.tsv (query id, item id, grade > 0) and queries.tsv (query id, catalog,
kind, text, price_min, price_max). Only ids and grades are written.

usage: make_qrels.py [SHARED_DATA_DIR]   (default $PVG_SHARED_DIR/data or ../shared/data)
"""
import collections, csv, gzip, io, json, os, re, sys

HERE = os.path.dirname(os.path.abspath(__file__))


def shared_dir():
    if len(sys.argv) > 1:
        return sys.argv[1]
    if os.environ.get("PVG_SHARED_DIR"):
        return os.path.join(os.environ["PVG_SHARED_DIR"], "data")
    return os.path.join(HERE, "..", "..", "..", "shared", "data")


def retail(path):
    """StockCode -> (first description, first positive unit price)."""
    items = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="") as f:
        r = csv.reader(f)
        next(r)
        for row in r:
            code, desc = row[1].strip(), row[2].strip()
            try:
                price = float(row[5])
            except ValueError:
                price = -1
            d = items.setdefault(code, [None, -1.0])
            if d[0] is None and desc:
                d[0] = desc
            if d[1] < 0 and price > 0:
                d[1] = price
    return {k: v for k, v in items.items() if v[0]}


def amazon(path):
    """asin -> (list of summaries, all review texts)."""
    s, t = collections.defaultdict(list), collections.defaultdict(list)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            s[d["asin"]].append(d.get("summary", ""))
            t[d["asin"]].append(d.get("reviewText", ""))
    return {a: (s[a], "\n".join(t[a])) for a in s}


def parse(path):
    queries, cur = [], None
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("Q "):
            f = [x.strip() for x in line[2:].split("|")]
            cur = {"id": f[0], "catalog": f[1], "kind": f[2], "text": f[3],
                   "price_min": float(f[4]) if f[4] else None,
                   "price_max": float(f[5]) if f[5] else None, "rules": []}
            queries.append(cur)
            continue
        grade, rest = line.split(" ", 1)
        m = re.match(r"(text)?@(\d+) (.*)", rest)
        if m:
            cur["rules"].append((int(grade), "text" if m.group(1) else "summ", int(m.group(2)),
                                 re.compile(m.group(3), re.I)))
        else:
            cur["rules"].append((int(grade), "desc", 1, re.compile(rest, re.I)))
    return queries


def grade_of(q, item):
    best = 0
    for g, where, n, rx in q["rules"]:
        if g <= best:
            continue
        if where == "desc":
            ok = rx.search(item[0]) is not None
        elif where == "summ":
            ok = sum(1 for s in item[0] if rx.search(s)) >= n
        else:
            ok = len(rx.findall(item[1])) >= n
        if ok:
            best = g
    return best


def main():
    d = shared_dir()
    cats = {"retail": retail(os.path.join(d, "online-retail", "online-retail.csv.gz")),
            "amazon": amazon(os.path.join(d, "amazon-musical-instruments-5core",
                                          "reviews_Musical_Instruments_5.json.gz"))}
    queries = parse(os.path.join(HERE, "judgements.txt"))
    with open(os.path.join(HERE, "queries.tsv"), "w") as fq, \
            open(os.path.join(HERE, "qrels.tsv"), "w") as fr:
        fq.write("qid\tcatalog\tkind\ttext\tprice_min\tprice_max\n")
        fr.write("qid\titem\tgrade\n")
        for q in queries:
            fq.write("%s\t%s\t%s\t%s\t%s\t%s\n" % (
                q["id"], q["catalog"], q["kind"], q["text"],
                "" if q["price_min"] is None else q["price_min"],
                "" if q["price_max"] is None else q["price_max"]))
            n = collections.Counter()
            for item_id in sorted(cats[q["catalog"]]):
                item = cats[q["catalog"]][item_id]
                g = grade_of(q, item)
                if g and q["catalog"] == "retail":
                    price = item[1]
                    if (q["price_min"] is not None and not (price >= 0 and price >= q["price_min"])) or \
                            (q["price_max"] is not None and not (price >= 0 and price <= q["price_max"])):
                        g = 0
                if g:
                    fr.write("%s\t%s\t%d\n" % (q["id"], item_id, g))
                    n[g] += 1
            print("%s %-32s grade3=%d grade2=%d grade1=%d" % (q["id"], q["text"], n[3], n[2], n[1]),
                  file=sys.stderr)


main()

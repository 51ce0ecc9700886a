#!/usr/bin/env python3
"""Paillier: privguide's addition, encryption and decryption rates beside python-paillier's.

Runs python-paillier (phe, with gmpy2) and build/bench_paillier in one run on
the same machine and prints one JSON object with both sets of figures and
the ratios (privguide / phe; > 1 means privguide is faster): addition,
sums, encryption (phe's fresh r^n against privguide's DJN short exponent and
its fresh r^n) and decryption.

  /usr/bin/python3 bench/bench_paillier.py --phe DIR [--bin build/bench_paillier]
                   [--bits 2048] [--seconds 1] [--count 256] [--decrypt 64]

DIR holds the `phe` package (python-paillier's source tree; see bench/README.md).
gmpy2 must import (Debian: apt-get install python3-gmpy2): without it phe
falls back to pure Python and the comparison would flatter privguide, so the
script refuses. Exits 77 when phe or gmpy2 is missing.

Clocks: single-threaded figures are CPU time (time.process_time here,
the thread's CPU time in bench_paillier), best of 5 rounds, so other load
on a shared machine does not skew the ratio. Batch decryption uses several
threads: it is compared by wall time against phe's wall time.
"""
import argparse
import functools
import json
import operator
import os
import subprocess
import sys
import time


def best_rate(fn, ops_per_call, seconds, clock):
    """Best of 5 rounds (each >= seconds/5) of calls per second of `clock`."""
    best = 0.0
    for _ in range(5):
        t0 = clock()
        ops = 0
        while True:
            fn()
            ops += ops_per_call
            t1 = clock()
            if t1 - t0 >= seconds / 5:
                break
        best = max(best, ops / (t1 - t0))
    return best


def bench_phe(phe_dir, bits, seconds, count, ndec):
    sys.path.insert(0, phe_dir)
    try:
        import gmpy2  # noqa: F401
    except ImportError:
        print("bench_paillier.py: gmpy2 is not importable (Debian: apt-get install "
              "python3-gmpy2; run with /usr/bin/python3)", file=sys.stderr)
        sys.exit(77)
    try:
        import phe
        from phe import paillier, util
    except ImportError:
        print("bench_paillier.py: no `phe` package under %s (see bench/README.md)" % phe_dir,
              file=sys.stderr)
        sys.exit(77)
    if not getattr(util, "HAVE_GMP", False):
        print("bench_paillier.py: phe does not use gmpy2", file=sys.stderr)
        sys.exit(77)
    pub, priv = paillier.generate_paillier_keypair(n_length=bits)
    cts = [pub.encrypt((i * 7919) % 100000 - 50000) for i in range(count)]
    pairs = list(zip(cts[0::2], cts[1::2]))

    def add_all():
        for a, b in pairs:
            a + b

    def sum_all():
        functools.reduce(operator.add, cts)

    raw = [c.ciphertext(be_secure=False) for c in cts]
    nsq = pub.nsquare
    raw_pairs = list(zip(raw[0::2], raw[1::2]))

    def mulmod_all():
        for a, b in raw_pairs:
            util.mulmod(a, b, nsq)

    def encrypt_one():
        pub.encrypt(12345)

    dec = cts[:ndec]

    def decrypt_all():
        for c in dec:
            priv.decrypt(c)

    pc = time.process_time
    out = {
        "version": getattr(phe, "__version__", "?"),
        "gmpy2": True,
        "add_per_s": best_rate(add_all, len(pairs), seconds, pc),
        "sum_terms_per_s": best_rate(sum_all, len(cts), seconds, pc),
        "mulmod_per_s": best_rate(mulmod_all, len(raw_pairs), seconds, pc),
        "encrypt_per_s": best_rate(encrypt_one, 1, seconds, pc),
        "decrypt_per_s": best_rate(decrypt_all, len(dec), seconds, pc),
        "decrypt_per_s_wall": best_rate(decrypt_all, len(dec), seconds, time.monotonic),
    }
    # the results are right (a sanity check, not a benchmark)
    assert priv.decrypt(functools.reduce(operator.add, cts)) == sum(
        (i * 7919) % 100000 - 50000 for i in range(count))
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phe", default=os.environ.get("PHE_SRC"),
                    help="directory holding python-paillier's phe package ($PHE_SRC)")
    ap.add_argument("--bin", default=os.path.join(here, "..", "build", "bench_paillier"))
    ap.add_argument("--bits", type=int, default=2048)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--count", type=int, default=256)
    ap.add_argument("--decrypt", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if not a.phe:
        print("bench_paillier.py: --phe DIR (python-paillier's source) is required; "
              "see bench/README.md", file=sys.stderr)
        sys.exit(77)
    phe_res = bench_phe(a.phe, a.bits, a.seconds, a.count, a.decrypt)
    run = subprocess.run([a.bin, "--bits", str(a.bits), "--seconds", str(a.seconds),
                          "--count", str(a.count), "--decrypt", str(a.decrypt),
                          "--threads", str(a.threads)],
                         check=True, capture_output=True, text=True)
    ours = json.loads(run.stdout)

    def ratio(x, y):
        return round(x / y, 2) if y else None

    res = {
        "bench": "paillier_vs_phe",
        "bits": a.bits,
        "privguide": ours,
        "phe": {k: (round(v, 1) if isinstance(v, float) else v) for k, v in phe_res.items()},
        "ratio": {
            "add": ratio(ours["add_per_s"], phe_res["add_per_s"]),
            "sum": ratio(ours["sum_terms_per_s"], phe_res["sum_terms_per_s"]),
            "add_mpn": ratio(ours["add_per_s_mpn"], phe_res["add_per_s"]),
            "sum_mpn": ratio(ours["sum_terms_per_s_mpn"], phe_res["sum_terms_per_s"]),
            "encrypt_djn": ratio(ours["encrypt_djn_per_s"], phe_res["encrypt_per_s"]),
            "encrypt_fresh": ratio(ours["encrypt_fresh_per_s"], phe_res["encrypt_per_s"]),
            "decrypt_1thread_cpu": ratio(ours["decrypt_per_s"], phe_res["decrypt_per_s"]),
            "decrypt_batch_wall": ratio(ours["decrypt_batch_per_s_wall"],
                                        phe_res["decrypt_per_s_wall"]),
            "decrypt_batch_1thread_wall": ratio(ours["decrypt_batch_1thread_per_s_wall"],
                                                phe_res["decrypt_per_s_wall"]),
        },
        "load_average": os.getloadavg()[0],
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()

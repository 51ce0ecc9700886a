#!/usr/bin/env python3
"""Writes the seed inputs of fuzz_mpc_net (fuzz/corpus/mpc_net/): the byte
streams two honest peers (parties 1 and 2) send to party 0 in `mpc sum`,
for both schemes, with and without an agreed group list. The message
format is documented at the top of src/crypto/mpc_net.c.
usage: fuzz/make_seeds.py   (run from anywhere; rewrites the files)"""
import hashlib
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "mpc_net")
PRIME = (1 << 61) - 1


def msg(mtype, sender, payload):
    return b"PVMP" + bytes([1, mtype, 0, 0]) + struct.pack("<II", sender, len(payload)) + payload


def digest(groups):
    if not groups:
        return bytes(32)
    h = hashlib.blake2b(key=b"PVMP-groups", digest_size=32)
    for g in groups:
        h.update(bytes([len(g)]) + g)
    return h.digest()


def vec(values):
    return struct.pack("<I", len(values)) + b"".join(struct.pack("<Q", v) for v in values)


def stream(sender, shamir, groups, labels, m):
    t = 2 if shamir else 3
    s = msg(1, sender, bytes([3, 2 if shamir else 1, t, 2]) + digest(groups))
    if not groups:
        s += msg(2, sender, struct.pack("<I", len(labels)) + b"".join(bytes([len(l)]) + l for l in labels))
    mod = PRIME if shamir else 1 << 64
    s += msg(3, sender, vec([(sender * 1000 + i * 7) % mod for i in range(m)]))
    s += msg(4, sender, vec([(sender * 31337 + i) % mod for i in range(m)]))
    return s


def main():
    os.makedirs(OUT, exist_ok=True)
    groups = [b"a", b"b", b"c"]
    for shamir in (0, 1):
        for use_groups in (0, 1):
            g = groups if use_groups else None
            s1 = stream(1, shamir, g, [b"a", b"c"], 3)
            s2 = stream(2, shamir, g, [b"b"], 3)
            flags = shamir | (use_groups << 1)
            name = "%s_%s" % ("shamir" if shamir else "additive", "groups" if use_groups else "labels")
            with open(os.path.join(OUT, name), "wb") as f:
                f.write(bytes([flags]) + struct.pack("<H", len(s1)) + s1 + s2)
            # the higher party connecting first
            with open(os.path.join(OUT, name + "_swapped"), "wb") as f:
                f.write(bytes([flags]) + struct.pack("<H", len(s2)) + s2 + s1)


if __name__ == "__main__":
    main()

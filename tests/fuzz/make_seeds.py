#!/usr/bin/env python3
"""Regenerate the fuzzers' seed corpora (tests/fuzz/seeds_*) from the test
fixtures. Run: python3 tests/fuzz/make_seeds.py. Not needed to build or fuzz."""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")


def out(corpus, name, blob):
    d = os.path.join(HERE, "seeds_" + corpus)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(blob)


def read(name):
    with open(os.path.join(FIX, name), "rb") as f:
        return f.read()


def main():
    for name in ("tiny-images-idx3-ubyte.gz", "tiny-labels-idx1-ubyte.gz"):
        out("idx", name, read(name))
    out("idx", "raw3d.idx", struct.pack(">BBBBIII", 0, 0, 8, 3, 3, 2, 2) + bytes(range(12)))
    out("idx", "raw1d.idx", struct.pack(">BBBBI", 0, 0, 8, 1, 4) + bytes([1, 2, 3, 9]))
    for name in ("text-dynamic.gz", "text-fixed.gz", "text-stored.gz"):
        body = read(name)[10:-8]  # the raw deflate stream
        out("inflate", name.replace(".gz", ".deflate"), b"\x10" + body)
    hdr = (b'{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],'
           b'"data_offsets":[0,24]},"b":{"dtype":"F32","shape":[3],"data_offsets":[24,36]}}')
    hdr += b" " * (-len(hdr) % 8)
    out("safetensors", "model.safetensors", struct.pack("<Q", len(hdr)) + hdr + bytes(range(36)))
    hdr2 = b'{"x":{"dtype":"BF16","shape":[],"data_offsets":[0,2]}}'
    out("safetensors", "scalar.safetensors", struct.pack("<Q", len(hdr2)) + hdr2 + b"\x01\x02")


if __name__ == "__main__":
    main()

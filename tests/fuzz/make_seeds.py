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
    out("csv", "classes.csv", b'a,b,y\n1,2,cat\n3.5,-4e2,dog\r\n"5",6,"c""at"\n')
    out("csv", "semicolon.csv", b"x1;x2\n1;2\n\n3;4\n")
    out("csv", "bom_regression.csv", b'\xef\xbb\xbfy,x\n0.5,1\n1.5,"2"\n')
    arch = (b"conv2d in=1 out=4 kernel=3 stride=1 padding=0; relu; maxpool2d kernel=2 stride=2 padding=0; "
            b"flatten; dense in=36 out=3")
    hdr3 = b'{"__metadata__":{"nn.layers":"' + arch + b'","nn.input_shape":"1,8,8"},' \
        b'"0.weight":{"dtype":"F32","shape":[4,1,3,3],"data_offsets":[0,144]},' \
        b'"0.bias":{"dtype":"F32","shape":[4],"data_offsets":[144,160]},' \
        b'"4.weight":{"dtype":"F32","shape":[3,36],"data_offsets":[160,592]},' \
        b'"4.bias":{"dtype":"F32","shape":[3],"data_offsets":[592,604]}}'
    hdr3 += b" " * (-len(hdr3) % 8)
    out("safetensors", "model_with_architecture.safetensors", struct.pack("<Q", len(hdr3)) + hdr3 + bytes(604))


if __name__ == "__main__":
    main()

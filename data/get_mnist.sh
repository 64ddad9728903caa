#!/bin/sh
# Download the four MNIST files into DIR (default data/mnist) and verify
# their canonical SHA-256. Uses curl or wget; tries several public mirrors
# (override with MNIST_MIRRORS="url1 url2", e.g. a file:// folder).
# Usage: sh data/get_mnist.sh [DIR]
set -u
dir=${1:-data/mnist}
mirrors="${MNIST_MIRRORS:-https://ossci-datasets.s3.amazonaws.com/mnist https://storage.googleapis.com/cvdf-datasets/mnist}"
files="train-images-idx3-ubyte.gz:440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609
train-labels-idx1-ubyte.gz:3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c
t10k-images-idx3-ubyte.gz:8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6
t10k-labels-idx1-ubyte.gz:f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"

sha256() {
    if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
    else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

fetch() { # url dest
    if command -v curl >/dev/null 2>&1; then curl -fsSL --connect-timeout 10 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then wget -q -T 10 -O "$2" "$1"
    else echo "error: neither curl nor wget is installed" >&2; return 1; fi
}

mkdir -p "$dir" || exit 1
failed=0
for entry in $files; do
    name=${entry%%:*}
    want=${entry#*:}
    dest="$dir/$name"
    if [ -f "$dest" ] && [ "$(sha256 "$dest")" = "$want" ]; then
        echo "ok       $dest (already present, SHA-256 verified)"
        continue
    fi
    got=""
    for m in $mirrors; do
        if fetch "$m/$name" "$dest.part"; then
            got=$(sha256 "$dest.part")
            if [ "$got" = "$want" ]; then
                mv "$dest.part" "$dest"
                echo "ok       $dest (from $m, SHA-256 verified)"
                break
            fi
            echo "warning: $m/$name has SHA-256 $got, expected $want; trying next mirror" >&2
        fi
        got=""
    done
    rm -f "$dest.part"
    if [ -z "$got" ]; then
        echo "error: could not download a verified $name" >&2
        failed=1
    fi
done
if [ "$failed" != 0 ]; then
    cat >&2 <<MSG

MNIST could not be downloaded (no network, or every mirror failed).
Put the four files below into $dir/ yourself (or anywhere, and pass
--data DIR to the programs or set NN_DATA_DIR):
  train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
  t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz
MSG
    exit 1
fi

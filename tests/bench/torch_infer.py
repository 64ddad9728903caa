"""PyTorch side of the W1-infer1 / W1-infer comparison: the seed CNN in eval
mode, one image at a time (microseconds per image, like bench's W1-infer1)
and at batch 1000 (images/s), float and with torch's dynamic int8
quantization of the Linear layers. Not used by the tests; run it beside
`bench --only W1-infer` in the same sitting (see tests/bench/RESULTS.md):

  OPENBLAS_NUM_THREADS=1 env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
      /usr/bin/python3 tests/bench/torch_infer.py --threads 1
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn


def seed_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10)).eval()


def per_image_us(model, images, reps):
    runs = []
    with torch.no_grad():
        for r in range(reps + 1):
            t0 = time.perf_counter()
            for x in images:
                model(x).argmax()
            if r:
                runs.append(1e6 * (time.perf_counter() - t0) / len(images))
    return statistics.median(runs)


def batch_img_per_s(model, batch, reps):
    runs = []
    with torch.no_grad():
        for r in range(reps + 1):
            t0 = time.perf_counter()
            model(batch).argmax(1)
            if r:
                runs.append(len(batch) / (time.perf_counter() - t0))
    return statistics.median(runs)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    model = seed_cnn()
    qmodel = torch.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    images = [torch.randn(1, 1, 28, 28) for _ in range(2000)]
    batch = torch.randn(1000, 1, 28, 28)
    for name, m in (("float", model), ("dynamic-int8", qmodel)):
        print(f"RESULT peer=pytorch-{torch.__version__} workload=W1-infer1 model={name} threads={a.threads} "
              f"latency_us={per_image_us(m, images, a.reps):.1f}", flush=True)
        print(f"RESULT peer=pytorch-{torch.__version__} workload=W1-infer model={name} threads={a.threads} "
              f"img_per_s={batch_img_per_s(m, batch, a.reps):.0f}", flush=True)


if __name__ == "__main__":
    main()

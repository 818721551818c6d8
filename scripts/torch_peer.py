#!/usr/bin/env python3
"""GPU check helpers (run by scripts/gpu-check.sh on the GPU machine; stdlib only except `bench`).

  torch_peer.py bench [--batch 50] [--size 512] [--steps 10] [--ours-ms MS]
      The `paper` preset's training step in PyTorch + cuDNN (cudnn.benchmark on), the peer of
      rescnn's kernels bench, in FP32 with TF32 off (what rescnn computes) and in PyTorch's defaults,
      each timed with the batch already on the GPU and with the batch uploaded from pageable host
      memory every step (what rescnn's timed step does); with --ours-ms (rescnn's ms/step from the
      bench), a ratio row for each. Then torch.matmul (cuBLAS) on the dense layers' GEMM shapes, FP32
      with TF32 off: the cuBLAS reference rates when rescnn's bench cannot open libcublas.so.12.
  torch_peer.py compare CANDIDATE/metrics.jsonl REFERENCE/metrics.jsonl
      Checks a rescnn-train run's logged losses against a reference run's (same seed and data).

The network mirrors src/model/presets.rs `paper`
(`c32k4 p2 +0 c64k8 p2 +0 c64k10 p2 +0 c64k10 p2 fc716 fc716`) on 3 x SIZE x SIZE inputs, 7 classes:
conv (SAME padding, stride 1) + ReLU + 2x2 max-pool, four times; after pools 1-3 the input shortcut
adds the r x r window mean of the network input, target channel c reading input channel c mod 3;
then FC 716 + ReLU, FC 716 + ReLU, FC 7, softmax cross-entropy; RMSProp lr 1e-3, rho 0.9,
eps 1e-7 (PyTorch adds eps outside the square root, rescnn inside; the cost is the same).
Timed: each step is (the upload of the batch,) forward, backward and update, then the loss is read
back to the host (as rescnn's step does); 3 warm-up steps, then the median of STEPS.
"""
import argparse
import json
import statistics
import sys
import time


def paper_net(torch, size, classes=7):
    nn = torch.nn
    F = nn.functional

    class Paper(nn.Module):
        def __init__(self):
            super().__init__()
            chans = [(3, 32, 4), (32, 64, 8), (64, 64, 10), (64, 64, 10)]
            self.convs = nn.ModuleList(nn.Conv2d(i, o, k, padding="same") for i, o, k in chans)
            side = size // 16
            self.fc = nn.ModuleList(
                [nn.Linear(64 * side * side, 716), nn.Linear(716, 716), nn.Linear(716, classes)]
            )

        def forward(self, x):
            h = x
            for i, conv in enumerate(self.convs):
                h = F.max_pool2d(F.relu(conv(h)), 2)
                if i < 3:  # +0 after pools 1, 2, 3
                    r = x.shape[2] // h.shape[2]
                    mean = F.avg_pool2d(x, r)
                    idx = torch.arange(h.shape[1], device=x.device) % x.shape[1]
                    h = h + mean[:, idx]
            h = torch.flatten(h, 1)
            h = F.relu(self.fc[0](h))
            h = F.relu(self.fc[1](h))
            return self.fc[2](h)

    return Paper()


def median_ms(torch, fn, steps):
    for _ in range(3):
        fn()
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


# The paper's dense layers (in, out) at batch B: the GEMMs rescnn's bench compares with cuBLAS.
PAPER_DENSE = [(64 * 32 * 32, 716), (716, 716), (716, 7)]


def matmul_rates(torch, dev, batch, steps):
    """torch.matmul (cuBLAS) in FP32 on each dense layer's three GEMMs, as rescnn's bench runs them."""
    torch.backends.cuda.matmul.allow_tf32 = False
    for layer, (inp, out) in enumerate(PAPER_DENSE, 1):
        x = torch.randn(batch, inp, device=dev)
        w = torch.randn(out, inp, device=dev)
        dy = torch.randn(batch, out, device=dev)
        for what, (m, n, k), fn in [
            ("forward x·wT", (batch, out, inp), lambda: torch.matmul(x, w.t())),
            ("backward dx = dy·w", (batch, inp, out), lambda: torch.matmul(dy, w)),
            ("backward dw = dyT·x", (out, inp, batch), lambda: torch.matmul(dy.t(), x)),
        ]:
            ms = median_ms(torch, fn, steps)
            print(
                f"matmul fc{layer} {what} {m}x{n}x{k} (cuBLAS via torch, FP32): {ms:.3f} ms, "
                f"{2 * m * n * k / ms / 1e6:.0f} GFLOP/s"
            )


def bench(args):
    import torch

    if not torch.cuda.is_available():
        print("torch_peer: PyTorch sees no CUDA GPU", file=sys.stderr)
        return 1
    dev = torch.device("cuda")
    print(
        f"torch {torch.__version__} (CUDA {torch.version.cuda}), cuDNN {torch.backends.cudnn.version()}, "
        f"{torch.cuda.get_device_name(0)}"
    )
    torch.backends.cudnn.benchmark = True
    modes = [
        ("FP32, TF32 off", False),
        ("PyTorch defaults", None),
    ]
    default_cudnn_tf32 = torch.backends.cudnn.allow_tf32
    default_matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    for name, tf32 in modes:
        torch.backends.cudnn.allow_tf32 = default_cudnn_tf32 if tf32 is None else tf32
        torch.backends.cuda.matmul.allow_tf32 = default_matmul_tf32 if tf32 is None else tf32
        torch.manual_seed(0)
        net = paper_net(torch, args.size).to(dev)
        opt = torch.optim.RMSprop(net.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
        on_gpu = torch.randn(args.batch, 3, args.size, args.size, device=dev)
        on_host = on_gpu.cpu()  # pageable, as rescnn's images are
        y = torch.arange(args.batch, device=dev) % 7

        def step(x):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            return loss.item()

        for where, fn in [
            ("batch on the GPU", lambda: step(on_gpu)),
            ("batch uploaded from host memory", lambda: step(on_host.to(dev))),
        ]:
            ms = median_ms(torch, fn, args.steps)
            print(
                f"paper step, PyTorch {name} (cudnn tf32 {torch.backends.cudnn.allow_tf32}, "
                f"matmul tf32 {torch.backends.cuda.matmul.allow_tf32}, cudnn.benchmark), {where}: "
                f"{ms:.1f} ms/step median of {args.steps}, batch {args.batch}, "
                f"3x{args.size}x{args.size}, {args.batch / ms * 1e3:.1f} images/s"
            )
            if args.ours_ms and where.startswith("batch uploaded"):
                print(
                    f"ratio rescnn / PyTorch {name}, both uploading the batch from host memory: "
                    f"{args.ours_ms:.1f} / {ms:.1f} ms = {args.ours_ms / ms:.2f}x"
                )
    matmul_rates(torch, dev, args.batch, args.steps)
    return 0


# The CUDA run against the CPU reference: the same seed, data and schedule (the default small
# network, 4 steps, losses logged at steps 2 and 4), so the logged losses agree up to f32 rounding
# (summation order in the GEMMs and reductions) compounded over the steps. The first steps' logits
# are large (train loss ~23 at step 2) and RMSProp divides by the root of the gradient's running
# square, so rounding moves the loss measurably: the emulated device (the same kernels on the CPU)
# against the CPU reference differed by 0.011 in val loss at step 4 (1.960 vs 1.949). The tolerance
# leaves about 3x that; a broken kernel (wrong tile, missing accumulation) moves the loss by far more.
# |a - b| <= ATOL + RTOL * |ref|.
ATOL, RTOL = 2e-2, 2e-2


def compare(args):
    def load(path):
        with open(path) as f:
            return {m["step"]: m for m in map(json.loads, filter(str.strip, f))}

    cand, ref = load(args.candidate), load(args.reference)
    steps = sorted(set(cand) & set(ref))
    if not steps:
        print(f"compare: no common logged step in {args.candidate} and {args.reference}")
        return 1
    worst, bad = 0.0, []
    for s in steps:
        for key in ("train_loss", "val_loss"):
            a, b = cand[s].get(key), ref[s].get(key)
            if a is None or b is None:
                continue
            err = abs(a - b)
            worst = max(worst, err)
            if not err <= ATOL + RTOL * abs(b):
                bad.append(f"step {s} {key}: {a:.6g} vs {b:.6g}")
    for line in bad:
        print("compare: MISMATCH " + line)
    verdict = "ok" if not bad else "FAILED"
    print(
        f"{verdict}: steps {steps}, max abs loss diff {worst:.3g} "
        f"(tolerance {ATOL} + {RTOL} x abs(cpu))"
    )
    return 0 if not bad else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--batch", type=int, default=50)
    b.add_argument("--size", type=int, default=512)
    b.add_argument("--steps", type=int, default=10)
    b.add_argument("--ours-ms", type=float, default=None, help="rescnn's paper step, ms (the bench's ms/step)")
    c = sub.add_parser("compare")
    c.add_argument("candidate")
    c.add_argument("reference")
    args = p.parse_args()
    return bench(args) if args.cmd == "bench" else compare(args)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""CPU training-step anchor for rescnn's `recipe` networks in TensorFlow/Keras: the same layers,
shapes, loss and optimiser as `cargo bench --bench recipe_train_step`, timed the same way.

Extended from ../../../shared/peers/train_step_bench.py (the paper's plain CNN) to the recipe:
the network is built from a rescnn architecture spec string (default: the `recipe` preset),
  c<N>k<K>   conv N@KxK, 'same' padding, stride 1 (ReLU unless `bn` follows)
  bn         batch normalisation of that conv (momentum 0.1 = Keras 0.9, eps 1e-5), then ReLU
  p<K>       max-pool KxK, stride K
  +<T>       the paper's input shortcut: tap T (0 = input, n = n-th pool's output) averaged over
             r x r windows and its channels tiled (channel c reads c mod C_src), added to the pool
             output just before
  stats      mean over frequency, then mean and sqrt(var + 1e-5) over time: (N, 2C)
  drop<P>    dropout with rate P (training only)
  fc<N>      dense N + ReLU
followed by the classifier (dense 7, logits) and softmax cross-entropy on soft targets (label
smoothing 0.1), AdamW (lr 1e-3, weight decay 1e-2 decoupled).
A train step = forward + backward + AdamW update inside one tf.function, data already in memory.
Timed: 3 warm-up steps, then the median of >= 10 steps (the loss fetched to the host each step).
The last line is machine-readable: `RESULT images_per_s=<median images/s>`.

Run with any python3:  python3 benches/peers/recipe_train_step.py [--spec SPEC] [--height 64 --width 128 --batch 32]
It creates/uses the virtualenv /tmp/peers-venv (tensorflow-cpu 2.21) and re-executes itself inside it.
"""
import os
import re
import sys

VENV = "/tmp/peers-venv"
REQUIREMENTS = ["tensorflow-cpu==2.21.0"]
IMPORT_CHECK = "import tensorflow"
RECIPE = "c32k3 bn p2 +0 c64k3 bn p2 +0 c128k3 bn p2 +0 c128k3 bn p2 stats drop0.3 fc128 drop0.3"


def ensure_venv():
    """Re-exec inside /tmp/peers-venv, creating it and installing REQUIREMENTS if needed."""
    import subprocess
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    if subprocess.call([py, "-c", IMPORT_CHECK], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) != 0:
        subprocess.check_call([py, "-m", "pip", "install", "-q", *REQUIREMENTS])
    os.execv(py, [py, os.path.abspath(__file__), *sys.argv[1:]])


ensure_venv()

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_tensorflow_quietly():
    """TF prints start-up banners on fd 2; keep them out of the output."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            import tensorflow as tf
            import keras
        except Exception:
            os.dup2(saved, 2)
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return tf, keras


tf, keras = import_tensorflow_quietly()
CLASSES = 7


class TileChannels(keras.layers.Layer):
    """Channel c of the output reads channel c mod C_src of the input (rescnn's shortcut tiling)."""

    def __init__(self, channels, **kw):
        super().__init__(**kw)
        self.channels = channels

    def call(self, x):
        src = x.shape[-1]
        return tf.gather(x, [c % src for c in range(self.channels)], axis=-1)


class StatsPool(keras.layers.Layer):
    """(N, H, W, C) -> (N, 2C): mean over H, then mean and sqrt(var + eps) over W."""

    def call(self, x):
        m = tf.reduce_mean(x, axis=1)
        mean = tf.reduce_mean(m, axis=1)
        var = tf.reduce_mean(tf.square(m - mean[:, None, :]), axis=1)
        return tf.concat([mean, tf.sqrt(var + 1e-5)], axis=-1)


def build_model(spec, c, h, w):
    tokens = spec.split()
    x = inp = keras.Input(shape=(h, w, c))
    taps = [inp]
    flops = 0
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if m := re.fullmatch(r"c(\d+)k(\d+)", tok):
            n, k = int(m[1]), int(m[2])
            flops += 2 * x.shape[1] * x.shape[2] * k * k * x.shape[3] * n
            x = keras.layers.Conv2D(n, k, padding="same", activation=None if nxt == "bn" else "relu")(x)
        elif tok == "bn":
            x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
            x = keras.layers.ReLU()(x)
        elif m := re.fullmatch(r"p(\d+)", tok):
            x = keras.layers.MaxPooling2D(int(m[1]))(x)
            taps.append(x)
        elif m := re.fullmatch(r"\+(\d+)", tok):
            src = taps[int(m[1])]
            r = src.shape[1] // x.shape[1]
            assert src.shape[1] == r * x.shape[1] and src.shape[2] == r * x.shape[2], "shortcut shapes"
            s = keras.layers.AveragePooling2D(r)(src) if r > 1 else src
            x = keras.layers.Add()([x, TileChannels(x.shape[3])(s)])
            taps[-1] = x
        elif tok == "stats":
            x = StatsPool()(x)
        elif m := re.fullmatch(r"drop([0-9.]+)", tok):
            x = keras.layers.Dropout(float(m[1]))(x)
        elif m := re.fullmatch(r"fc(\d+)", tok):
            if len(x.shape) > 2:
                x = keras.layers.Flatten()(x)
            flops += 2 * x.shape[-1] * int(m[1])
            x = keras.layers.Dense(int(m[1]), activation="relu")(x)
        else:
            raise SystemExit(f"unknown spec token {tok!r}")
    if len(x.shape) > 2:
        x = keras.layers.Flatten()(x)
    flops += 2 * x.shape[-1] * CLASSES
    out = keras.layers.Dense(CLASSES)(x)
    return keras.Model(inp, out), flops


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default=RECIPE)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = TensorFlow default)")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    if a.steps < 10:
        ap.error("--steps must be >= 10")
    if a.threads:
        tf.config.threading.set_intra_op_parallelism_threads(a.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.keras.utils.set_random_seed(0)
    model, fwd_flops = build_model(a.spec, a.channels, a.height, a.width)
    opt = keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=1e-2)
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    rng = np.random.default_rng(1)
    x = tf.constant(rng.standard_normal((a.batch, a.height, a.width, a.channels), dtype=np.float32))
    y = tf.constant(np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, size=a.batch)])
    loss0 = float(train_step(x, y))
    assert np.isfinite(loss0), "non-finite loss"
    for _ in range(a.warmup):
        train_step(x, y).numpy()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        train_step(x, y).numpy()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f"tensorflow {tf.__version__}, cpus {os.cpu_count()}, spec `{a.spec}`, input {a.channels}x{a.height}x{a.width}, "
          f"batch {a.batch}, {model.count_params()} parameters, {fwd_flops / 1e6:.1f} MFLOP forward/image")
    print(f"train step: min {min(times) * 1e3:.1f} ms, median {med * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms, "
          f"{a.batch / med:.1f} images/s, {3 * fwd_flops * a.batch / med / 1e9:.1f} GFLOP/s (train = 3 x forward)")
    print(f"RESULT images_per_s={a.batch / med:.3f}")


if __name__ == "__main__":
    main()

"""Benchmark: our NPLM (kernel / Falkon-style and torch NN) against the `nplm` package from PyPI (its NN).

The peer needs TensorFlow / Keras 3, which cannot share the main venv (QKeras pins Keras 2), so it runs in a
separate venv `.venv-peers` (tensorflow-cpu==2.21.0 nplm==0.0.6 matplotlib scipy), created here on first use
(never by the tests), in a subprocess, on the same data written to a temporary .npz file.

Data: the 1-D NPLM benchmark (reference ~ Exp(1); data = Poisson(N_D) background events, optionally plus a
Gaussian bump at x = 4). The same architecture (1-4-1 sigmoid, weight clip 9), loss and epoch count are used
for our torch NN (Adam, `optimizer="adam"`) and the peer's Keras `BSMfinderNet`, so their times per fit compare
like for like; `lbfgs_nn` is the default NN fit (L-BFGS-B to convergence, the clip as bounds), the kernel model
the fast alternative. Prints t values, seconds per fit, and the time ratios.

    .venv/bin/python bench/bench_nplm.py [--epochs 2000] [--n-ref 20000] [--n-data 2000] [--no-peer]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._peers import ensure_peer_venv  # noqa: E402


PEER_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from NPLM.NNutils import BSMfinderNet
    d = np.load(sys.argv[1])
    epochs, clip = int(sys.argv[2]), float(sys.argv[3])
    out = {}
    for name in ("h0", "sig"):
        ref, data, w = d["ref"], d["data_" + name], float(d["w_ref"])
        x = np.concatenate([data, ref]).astype("float32")
        y = np.concatenate([np.ones(len(data)), np.zeros(len(ref))]).astype("float32")
        wt = np.concatenate([np.ones(len(data)), np.full(len(ref), w)]).astype("float32")
        target = np.stack([y, wt], axis=1)
        def loss(true, pred):  # the NPLM loss, as NPLM.NNutils.imperfect_loss without nuisances
            f = pred[:, 0]
            return tf.reduce_sum((1 - true[:, 0]) * true[:, 1] * (tf.exp(f) - 1) - true[:, 0] * true[:, 1] * f)
        tf.keras.utils.set_random_seed(0)
        model = BSMfinderNet((None, x.shape[1]), architecture=[x.shape[1], 4, 1], weight_clipping=clip)
        model.compile(loss=loss, optimizer=tf.keras.optimizers.Adam(learning_rate=float(sys.argv[4])))
        t0 = time.perf_counter()
        hist = model.fit(x, target, batch_size=x.shape[0], epochs=epochs, verbose=0)
        secs = time.perf_counter() - t0
        out[name] = {"t": -2.0 * float(hist.history["loss"][-1]), "seconds": secs}
    print("PEER_JSON " + json.dumps(out))
    """
)


def make_data(n_ref: int, n_data: int, n_sig: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    ref = rng.exponential(size=(n_ref, 1))
    h0 = rng.exponential(size=(rng.poisson(n_data), 1))
    sig = np.concatenate([rng.exponential(size=(rng.poisson(n_data), 1)), rng.normal(4.0, 0.3, size=(n_sig, 1))])
    return {"ref": ref, "data_h0": h0, "data_sig": sig, "w_ref": np.array(n_data / n_ref)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-ref", type=int, default=20_000)
    ap.add_argument("--n-data", type=int, default=2_000)
    ap.add_argument("--n-sig", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=2000)
    ap.add_argument("--clip", type=float, default=9.0)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--no-peer", action="store_true", help="skip the PyPI nplm comparison")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    a = ap.parse_args(argv)

    from l1ad.offline import nplm

    d = make_data(a.n_ref, a.n_data, a.n_sig)
    ours: dict = {}
    for label, cfg in (("kernel", nplm.NPLMConfig(model="kernel")),
                       ("torch_nn", nplm.NPLMConfig(model="nn", optimizer="adam", hidden=(4,), weight_clip=a.clip,
                                                    epochs=a.epochs, lr=a.lr, standardize=False)),
                       ("lbfgs_nn", nplm.NPLMConfig(model="nn", optimizer="lbfgs", hidden=(4,), weight_clip=a.clip,
                                                    standardize=False))):
        ours[label] = {}
        for name in ("h0", "sig"):
            t0 = time.perf_counter()
            f = nplm.fit(d["ref"], d["data_" + name], cfg, n_expected=float(a.n_data))
            ours[label][name] = {"t": f.t, "seconds": time.perf_counter() - t0}
    report = {"setup": vars(a) | {"json": str(a.json) if a.json else None}, "ours": ours}
    for label, r in ours.items():
        print(f"{label:9s}  t(H0) = {r['h0']['t']:8.2f}  t(signal) = {r['sig']['t']:8.2f}  "
              f"seconds/fit = {np.mean([r['h0']['seconds'], r['sig']['seconds']]):.3f}")
    if not a.no_peer:
        try:
            py = ensure_peer_venv()
        except subprocess.CalledProcessError as e:
            print(f"peer venv could not be created ({e}); rerun with --no-peer", file=sys.stderr)
            return 1
        with tempfile.TemporaryDirectory() as tmp:
            npz = Path(tmp) / "data.npz"
            np.savez(npz, **d)
            script = Path(tmp) / "peer.py"
            script.write_text(PEER_SCRIPT)
            env = dict(os.environ, OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
            p = subprocess.run([str(py), str(script), str(npz), str(a.epochs), str(a.clip), str(a.lr)],
                               capture_output=True, text=True, env=env)
        line = next((l for l in p.stdout.splitlines() if l.startswith("PEER_JSON ")), None)
        if p.returncode != 0 or line is None:
            print(f"peer run failed (rc={p.returncode}):\n{p.stderr[-3000:]}", file=sys.stderr)
            return 1
        peer = json.loads(line[len("PEER_JSON "):])
        report["peer_nplm_0.0.6_keras"] = peer
        ps = np.mean([peer["h0"]["seconds"], peer["sig"]["seconds"]])
        print(f"{'peer NN':9s}  t(H0) = {peer['h0']['t']:8.2f}  t(signal) = {peer['sig']['t']:8.2f}  seconds/fit = {ps:.3f}")
        for label, r in ours.items():
            s = np.mean([r["h0"]["seconds"], r["sig"]["seconds"]])
            report[f"ratio_peer_over_{label}"] = ps / s
            print(f"time ratio peer NN / ours {label}: {ps / s:.1f}x")
    if a.json:
        from l1ad.trigger.atomic import write_json_atomic

        write_json_atomic(a.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The New Physics Learning Machine (NPLM): a goodness-of-fit two-sample test of data against a reference.

D'Agnolo & Wulzer (1806.02350), D'Agnolo et al. (1912.12155), fast kernel version Letizia et al. (2204.02317);
formula as in the seed talk (Letizia, "Theoretical topics on anomaly detection"):

    t(D, R) = -2 [ N(SM)/N_R * sum_{x in R} (e^{f(x)} - 1)  -  sum_{x in D} f(x) ]  ~  2 log L_true(D) / L_SM(D)

with f(x) ~ log n_true(x) / n(x | SM), learned from the two samples. N(SM) is the number of events expected in
the data under the reference hypothesis, N_R the size of the reference sample, so each reference event
carries weight N(SM)/N_R; weighted reference samples carry per-event weights summing to N(SM).

Two learners for f:

* ``kernel`` (default; Falkon-NPLM style): f(x) = sum_j a_j k(x, c_j), Gaussian kernel, M Nystrom centres
  drawn from the pooled sample, fitted by a few Newton steps on the weighted logistic loss
  ``sum_D log(1+e^-f) + sum_R w log(1+e^f)`` + lambda a^T K_MM a (whose minimiser is the same log density
  ratio), then plugged into t above. Each fit is an M x M linear solve per Newton step.
* ``nn`` (the original NPLM): a small sigmoid network with weight clipping minimising the NPLM loss
  ``L = sum_R w (e^f - 1) - sum_D f`` directly; t = -2 min L. By default the minimisation is L-BFGS-B with
  exact gradients and every weight bounded by the clip, run to convergence (the limit the papers' long Adam
  training approaches; 3000 Adam epochs stop short of it: null mean 9.3 for 13 parameters); full-batch Adam
  with clipping after each step is kept (``optimizer="adam"``). The clip is the NPLM's tuning knob:
  `tune_weight_clip` picks the clip at which the null's fitted chi2 dof equals the parameter count, to be
  checked on fresh toys (`chi2_check`); bench/coverage_offline.py nplm_nn measures it. Measured on the 1-D
  benchmark (reference Exp(1), N_R = 10,000, N(SM) = 1,000, extended, (1,4,1) net = 13 parameters): fitted dof
  5.3 / 8.0 / 11.0 / 14.1 at clips 1 / 2 / 4 / 8 (40 toys each), tuned clip 6.24; on 200 fresh null toys at
  6.24: fitted dof 12.0, mean 12.4, KS p 0.15 against chi2(13), P(p_chi2(13) <= 0.05 / 0.1 / 0.2) = 0.060 +- 0.017
  / 0.090 +- 0.020 / 0.180 +- 0.027 (out/offline/coverage/nplm_nn.md). The clip depends on the sample sizes,
  dimension and network: tune it for each setup; the default 9 is not a tuned value.

Extended or shape-only. With `n_expected` (the total count is meaningful) the test is extended: N(SM) =
n_expected, toys with Poisson(N(SM)) events. Without it, N(SM) = the data's count (shape only) and the toys
have exactly that many events (`nplm_test`), so observed and toys are the same test. Kernel NPLM on the
LHCO-like SR features (N(SM) = 2000, fixed reference of 10,000, 300 data sets, 300 null toys) covers
conservatively in both modes: P(p <= 0.1) = 0.050 +- 0.013 extended, 0.033 +- 0.010 shape only (the likely
cause, not separately measured: each toy's reference is the 8,000 reference events not drawn as its data,
smaller than the observed 10,000, so the toys' t run larger). Nuisance parameters (normalisation, scale): `offline.nplm_syst`.

The distribution of t under the null comes from toys (`null_toys`), each a data set drawn from the reference
(the remaining reference events as that toy's reference), run on Dask. The quoted p-value (`quoted_p`) is the
empirical (1 + #{t_toy >= t_obs}) / (1 + n_toys); a chi2 fitted to the toys extrapolates beyond the toys'
reach only when a KS test accepts it, otherwise the toys' bound is quoted.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from l1ad.offline._threads import DEFAULT_THREADS, limited_threads


# ---------------------------------------------------------------------- the statistic alone
def test_statistic(f_ref: np.ndarray, f_data: np.ndarray, n_expected_ref_weight: float | np.ndarray,
                   data_weight: np.ndarray | None = None) -> float:
    """t = -2 [ sum_R w_R (e^f - 1) - sum_D w_D f ].

    n_expected_ref_weight: N(SM)/N_R, the weight of one reference event (a scalar), or an array of per-event
    reference weights (summing to N(SM)). data_weight: per-event data weights (default 1).
    """
    f_ref = np.asarray(f_ref, dtype=np.float64)
    f_data = np.asarray(f_data, dtype=np.float64)
    w_r = np.broadcast_to(np.asarray(n_expected_ref_weight, dtype=np.float64), f_ref.shape)
    w_d = np.ones_like(f_data) if data_weight is None else np.asarray(data_weight, dtype=np.float64)
    return float(-2.0 * (np.sum(w_r * np.expm1(f_ref)) - np.sum(w_d * f_data)))


# ---------------------------------------------------------------------- configuration
class NPLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Literal["kernel", "nn"] = "kernel"
    standardize: bool = True
    seed: int = 0
    n_threads: int = Field(DEFAULT_THREADS, ge=1)
    # kernel
    n_centers: int | None = Field(None, ge=1, description="Nystrom centres; None = sqrt(N_D + N_R), capped")
    max_centers: int = Field(600, ge=1)
    sigma: float | None = Field(None, gt=0, description="kernel width (standardised units); None = percentile rule")
    sigma_percentile: float = Field(90.0, gt=0, lt=100, description="percentile of pairwise reference distances")
    lam: float = Field(1e-6, ge=0, description="ridge penalty on the RKHS norm, per event")
    newton_steps: int = Field(30, ge=1)
    tol: float = Field(1e-3, gt=0, description="stop when N x the Newton decrement (about the possible gain in t) is below this")
    chunk: int = Field(8192, ge=64)
    cache_mb: float = Field(256.0, ge=0, description="keep the N x M kernel matrix in memory up to this size")
    # nn
    hidden: tuple[int, ...] = (4,)
    weight_clip: float = Field(9.0, gt=0, description="bound on every weight (not the biases) of the NN; tune it with "
                               "`tune_weight_clip` so that the null matches chi2(dof = number of parameters)")
    optimizer: Literal["lbfgs", "adam"] = Field(
        "lbfgs", description="lbfgs: L-BFGS-B with the clipping as box constraints, run to convergence (the limit of "
        "the papers' long training); adam: full-batch Adam with clipping after every step for `epochs` steps")
    max_iter: int = Field(3000, ge=1, description="L-BFGS-B iterations at most")
    restarts: int = Field(1, ge=1, description="L-BFGS-B random initialisations; the lowest loss is kept")
    epochs: int = Field(3000, ge=1)
    lr: float = Field(5e-3, gt=0)
    # toys
    n_toys: int = Field(100, ge=1)


# ---------------------------------------------------------------------- models
def _pairwise_sq(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    d = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T
    return np.maximum(d, 0.0)


def sigma_rule(X: np.ndarray, percentile: float = 90.0, max_points: int = 2000, seed: int = 0) -> float:
    """Kernel width from a percentile of the pairwise distances (Falkon-NPLM uses the 90th)."""
    rng = np.random.default_rng(seed)
    if len(X) > max_points:
        X = X[rng.choice(len(X), max_points, replace=False)]
    d = np.sqrt(_pairwise_sq(X, X)[np.triu_indices(len(X), 1)])
    s = float(np.percentile(d, percentile))
    if not np.isfinite(s) or s <= 0:
        raise ValueError(f"degenerate inputs: pairwise-distance percentile is {s}")
    return s


@dataclass
class KernelModel:
    centers: np.ndarray
    alpha: np.ndarray
    sigma: float
    chunk: int = 8192
    newton_steps_used: int = 0

    def kernel(self, X: np.ndarray) -> np.ndarray:
        return np.exp(-_pairwise_sq(X, self.centers) / (2.0 * self.sigma**2))

    def __call__(self, X: np.ndarray) -> np.ndarray:
        out = np.empty(len(X))
        for s in range(0, len(X), self.chunk):
            out[s : s + self.chunk] = self.kernel(X[s : s + self.chunk]) @ self.alpha
        return out


def _logistic_terms(f: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Weighted logistic loss sum, first and second derivatives w.r.t. f (y=1 data, y=0 reference)."""
    z = np.where(y == 1, -f, f)
    loss = float(np.sum(w * np.logaddexp(0.0, z)))
    p = 1.0 / (1.0 + np.exp(-f))  # sigmoid(f)
    g = w * np.where(y == 1, p - 1.0, p)
    h = w * p * (1.0 - p)
    return loss, g, h


def fit_kernel(X: np.ndarray, y: np.ndarray, w: np.ndarray, cfg: NPLMConfig, rng: np.random.Generator) -> KernelModel:
    """Nystrom kernel logistic regression by damped Newton on (1/N) sum w l(y, f) + lam a^T K_MM a."""
    n = len(X)
    M = cfg.n_centers or int(np.sqrt(n))
    M = int(min(M, cfg.max_centers, n))
    centers = X[rng.choice(n, M, replace=False)]
    sigma = cfg.sigma or sigma_rule(X[y == 0], cfg.sigma_percentile, seed=cfg.seed)
    model = KernelModel(centers, np.zeros(M), sigma, cfg.chunk)
    Kmm = model.kernel(centers)
    lam = cfg.lam
    # the n x M kernel matrix is kept in memory when it fits the budget, else recomputed chunk by chunk
    cached = n * M * 8 <= cfg.cache_mb * 2**20
    Knm = model.kernel(X) if cached else None

    def chunks():
        for s in range(0, n, cfg.chunk):
            yield s, (Knm[s : s + cfg.chunk] if cached else model.kernel(X[s : s + cfg.chunk]))

    def objective(alpha: np.ndarray) -> tuple[float, np.ndarray]:
        f = Knm @ alpha if cached else np.concatenate([K @ alpha for _, K in chunks()])
        loss, _, _ = _logistic_terms(f, y, w)
        return loss / n + lam * float(alpha @ Kmm @ alpha), f

    J, f = objective(model.alpha)
    for step in range(cfg.newton_steps):
        grad = 2.0 * lam * (Kmm @ model.alpha)
        H = 2.0 * lam * Kmm.copy()
        for s, Kc in chunks():
            _, g, h = _logistic_terms(f[s : s + cfg.chunk], y[s : s + cfg.chunk], w[s : s + cfg.chunk])
            grad += Kc.T @ g / n
            Kh = Kc * np.sqrt(h / n)[:, None]
            H += Kh.T @ Kh
        H[np.diag_indices_from(H)] += 1e-10 * max(np.trace(H) / M, 1e-300)
        try:
            delta = np.linalg.solve(H, grad)
        except np.linalg.LinAlgError:
            delta = np.linalg.lstsq(H, grad, rcond=None)[0]
        decrement = float(grad @ delta)
        t_step = 1.0
        while True:  # backtracking line search (Armijo)
            J_new, f_new = objective(model.alpha - t_step * delta)
            if J_new <= J - 0.25 * t_step * decrement or t_step < 1e-6:
                break
            t_step *= 0.5
        model.alpha = model.alpha - t_step * delta
        J, f = J_new, f_new
        model.newton_steps_used = step + 1
        if n * decrement < cfg.tol:  # remaining improvement of the loss, in units of t (~2 N J)
            break
    return model


class _ClippedNet:
    """f_w: sigmoid MLP, kernel weights clipped to [-c, c] after every step (the original NPLM)."""

    def __init__(self, d: int, cfg: NPLMConfig, seed: int):
        import torch

        torch.manual_seed(seed)
        dims = [d, *cfg.hidden, 1]
        self.layers = [torch.nn.Linear(a, b).double() for a, b in zip(dims[:-1], dims[1:])]
        self.clip = cfg.weight_clip

    def parameters(self):
        return [p for l in self.layers for p in l.parameters()]

    def __call__(self, x):
        import torch

        for i, l in enumerate(self.layers):
            x = l(x)
            if i < len(self.layers) - 1:
                x = torch.sigmoid(x)
        return x.squeeze(-1)

    def clip_(self) -> None:
        import torch

        with torch.no_grad():
            for l in self.layers:
                l.weight.clamp_(-self.clip, self.clip)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def fit_nn(X: np.ndarray, y: np.ndarray, w: np.ndarray, cfg: NPLMConfig, seed: int) -> tuple[_ClippedNet, list[float]]:
    """Full-batch Adam on the NPLM loss sum_R w (e^f - 1) - sum_D w f."""
    import torch

    net = _ClippedNet(X.shape[1], cfg, seed)
    Xt = torch.from_numpy(X)
    ref = torch.from_numpy(y == 0)
    wt = torch.from_numpy(w)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    hist = []
    for _ in range(cfg.epochs):
        f = net(Xt)
        loss = torch.sum(torch.where(ref, wt * torch.expm1(f), -wt * f))
        opt.zero_grad()
        loss.backward()
        opt.step()
        net.clip_()
        hist.append(float(loss.detach()))
    return net, hist


class NumpyNet:
    """The same sigmoid MLP in numpy, with the loss and its exact gradient, for L-BFGS-B (`fit_nn_lbfgs`).

    Parameters are packed as (W_1, b_1, ..., W_L, b_L); W_l has shape (out, in) as in torch.Linear."""

    def __init__(self, dims: list[int], theta: np.ndarray | None = None):
        self.dims = list(dims)
        self.shapes = [((b, a), (b,)) for a, b in zip(self.dims[:-1], self.dims[1:])]
        self.theta = np.zeros(self.n_params) if theta is None else np.asarray(theta, dtype=np.float64)

    @property
    def n_params(self) -> int:
        return sum(a * b + a for (a, b), _ in self.shapes)

    def init(self, rng: np.random.Generator) -> np.ndarray:
        """torch.nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases."""
        out = []
        for (o, i), _ in self.shapes:
            k = 1.0 / np.sqrt(i)
            out += [rng.uniform(-k, k, o * i), rng.uniform(-k, k, o)]
        return np.concatenate(out)

    def unpack(self, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        out, s = [], 0
        for (o, i), _ in self.shapes:
            W = theta[s : s + o * i].reshape(o, i)
            s += o * i
            out.append((W, theta[s : s + o]))
            s += o
        return out

    def bounds(self, clip: float) -> list[tuple[float | None, float | None]]:
        b: list[tuple[float | None, float | None]] = []
        for (o, i), _ in self.shapes:
            b += [(-clip, clip)] * (o * i) + [(None, None)] * o
        return b

    def forward(self, X: np.ndarray, theta: np.ndarray | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        acts = [X]
        layers = self.unpack(self.theta if theta is None else theta)
        a = X
        for j, (W, b) in enumerate(layers):
            z = a @ W.T + b
            a = z if j == len(layers) - 1 else 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid, overflow-free
            acts.append(a)
        return a[:, 0], acts

    def backward(self, theta: np.ndarray, acts: list[np.ndarray], g_f: np.ndarray) -> np.ndarray:
        """Gradient of sum_i L_i w.r.t. theta given g_f = dL/df per event."""
        layers = self.unpack(theta)
        delta = g_f[:, None]
        grads = []
        for j in range(len(layers) - 1, -1, -1):
            W, _ = layers[j]
            a_in = acts[j]
            grads.append((delta.sum(0), delta.T @ a_in))
            if j > 0:
                delta = (delta @ W) * a_in * (1.0 - a_in)
        out = []
        for db, dW in reversed(grads):
            out += [dW.ravel(), db]
        return np.concatenate(out)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return self.forward(np.asarray(X, dtype=np.float64))[0]


def nplm_loss(f: np.ndarray, is_ref: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
    """L = sum_R w (e^f - 1) - sum_D w f and dL/df (f capped at 60 inside the exponential)."""
    e = np.expm1(np.minimum(f, 60.0))
    loss = float(np.sum(np.where(is_ref, w * e, -w * f)))
    return loss, np.where(is_ref, w * (e + 1.0), -w)


def fit_nn_lbfgs(X: np.ndarray, y: np.ndarray, w: np.ndarray, cfg: NPLMConfig, seed: int,
                 offset: np.ndarray | None = None) -> tuple[NumpyNet, dict]:
    """Minimise the NPLM loss over the network weights with L-BFGS-B, every weight bounded by +-weight_clip
    (the clipping as a constraint, not a projection after each step), to convergence; `cfg.restarts` random
    initialisations, the lowest loss kept. `offset`: a fixed per-event term added to f (used by the
    nuisance-parameter test)."""
    from scipy.optimize import minimize

    net = NumpyNet([X.shape[1], *cfg.hidden, 1])
    is_ref = y == 0
    off = 0.0 if offset is None else offset

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        f, acts = net.forward(X, theta)
        loss, g = nplm_loss(f + off, is_ref, w)
        return loss, net.backward(theta, acts, g)

    rng = np.random.default_rng(seed)
    best = None
    for _ in range(cfg.restarts):
        theta0 = np.clip(net.init(rng), -cfg.weight_clip, cfg.weight_clip)
        r = minimize(fun, theta0, jac=True, method="L-BFGS-B", bounds=net.bounds(cfg.weight_clip),
                     options={"maxiter": cfg.max_iter, "maxfun": 2 * cfg.max_iter, "ftol": 1e-11, "gtol": 1e-6})
        if best is None or r.fun < best.fun:
            best = r
    net.theta = best.x
    return net, {"final_loss": float(best.fun), "iterations": int(best.nit), "converged": bool(best.success),
                 "at_clip": int(np.sum(np.isclose(np.abs(best.x), cfg.weight_clip) & _weight_mask(net)))}


def _weight_mask(net: NumpyNet) -> np.ndarray:
    m = []
    for (o, i), _ in net.shapes:
        m += [np.ones(o * i, bool), np.zeros(o, bool)]
    return np.concatenate(m)


# ---------------------------------------------------------------------- one test
@dataclass
class NPLMFit:
    t: float
    f_ref: np.ndarray
    f_data: np.ndarray
    ref_weight: np.ndarray
    seconds: float
    model: object = field(repr=False)
    info: dict = field(default_factory=dict)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """f(x) ~ log n_data(x) / n_ref(x) at new points (raw feature units)."""
        import torch

        Z = (np.asarray(X, dtype=np.float64) - self.info["mu"]) / self.info["sd"]
        if isinstance(self.model, (KernelModel, NumpyNet)):
            return self.model(Z)
        with torch.no_grad():
            return self.model(torch.from_numpy(Z)).numpy()


def _weights(X_ref: np.ndarray, X_data: np.ndarray, w_ref, w_data, n_expected) -> tuple[np.ndarray, np.ndarray]:
    wd = np.ones(len(X_data)) if w_data is None else np.asarray(w_data, dtype=np.float64)
    if w_ref is None:
        n_exp = float(wd.sum()) if n_expected is None else float(n_expected)
        wr = np.full(len(X_ref), n_exp / len(X_ref))
    else:
        wr = np.asarray(w_ref, dtype=np.float64)
        if n_expected is not None:
            wr = wr * float(n_expected) / wr.sum()
    if wr.shape != (len(X_ref),) or wd.shape != (len(X_data),):
        raise ValueError("weights must have one entry per event")
    return wr, wd


def fit(X_ref: np.ndarray, X_data: np.ndarray, cfg: NPLMConfig = NPLMConfig(), *, w_ref: np.ndarray | None = None,
        w_data: np.ndarray | None = None, n_expected: float | None = None, seed: int | None = None) -> NPLMFit:
    """Learn f on (reference, data) and return t.

    Reference weights: `w_ref` if given (rescaled to sum to `n_expected` if that is given too), else
    n_expected / N_R each, with n_expected defaulting to the data's weight sum (N(SM) = N_D: a pure shape test).
    """
    X_ref = np.asarray(X_ref, dtype=np.float64)
    X_data = np.asarray(X_data, dtype=np.float64)
    if X_ref.ndim == 1:
        X_ref, X_data = X_ref[:, None], X_data[:, None]
    if X_ref.ndim != 2 or X_data.ndim != 2 or X_ref.shape[1] != X_data.shape[1]:
        raise ValueError(f"X_ref and X_data must be (N, d) with equal d, got {X_ref.shape}, {X_data.shape}")
    if len(X_ref) < 2 or len(X_data) < 1:
        raise ValueError("need at least 2 reference and 1 data events")
    wr, wd = _weights(X_ref, X_data, w_ref, w_data, n_expected)
    seed = cfg.seed if seed is None else seed
    rng = np.random.default_rng(seed)
    if cfg.standardize:
        mu = np.average(X_ref, axis=0, weights=wr)
        sd = np.sqrt(np.average((X_ref - mu) ** 2, axis=0, weights=wr)) + 1e-12
    else:
        mu, sd = np.zeros(X_ref.shape[1]), np.ones(X_ref.shape[1])
    X = np.concatenate([(X_ref - mu) / sd, (X_data - mu) / sd])
    y = np.concatenate([np.zeros(len(X_ref), np.int8), np.ones(len(X_data), np.int8)])
    w = np.concatenate([wr, wd])
    t0 = time.perf_counter()
    info: dict = {"mu": mu, "sd": sd, "n_ref": len(X_ref), "n_data": len(X_data), "n_expected": float(wr.sum())}
    with limited_threads(cfg.n_threads):
        if cfg.model == "kernel":
            model = fit_kernel(X, y, w, cfg, rng)
            f = model(X)
            info.update(sigma=model.sigma, n_centers=len(model.centers), newton_steps=model.newton_steps_used)
        elif cfg.optimizer == "lbfgs":
            model, opt = fit_nn_lbfgs(X, y, w, cfg, seed)
            f = model(X)
            info.update(n_params=model.n_params, t_from_loss=-2.0 * opt["final_loss"], **opt)
        else:
            import torch

            model, hist = fit_nn(X, y, w, cfg, seed)
            with torch.no_grad():
                f = model(torch.from_numpy(X)).numpy()
            info.update(n_params=model.n_params, final_loss=hist[-1], t_from_loss=-2.0 * hist[-1])
    secs = time.perf_counter() - t0
    f_ref, f_data = f[: len(X_ref)], f[len(X_ref) :]
    t = test_statistic(f_ref, f_data, wr, wd)
    return NPLMFit(t, f_ref, f_data, wr, secs, model, info)


# ---------------------------------------------------------------------- null distribution
def toy_split(n_ref: int, n_expected: float, rng: np.random.Generator, w_ref: np.ndarray | None = None,
              extended: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Indices (toy data, toy reference): n ~ Poisson(n_expected) events (extended; exactly round(n_expected)
    for the shape-only test) drawn from the reference without replacement (with probability proportional to
    w_ref if weighted), the rest as the toy's reference."""
    n = int(rng.poisson(n_expected)) if extended else int(round(n_expected))
    n = min(n, n_ref - 2)
    p = None if w_ref is None else np.asarray(w_ref, dtype=np.float64) / np.sum(w_ref)
    data = rng.choice(n_ref, n, replace=False, p=p)
    mask = np.ones(n_ref, bool)
    mask[data] = False
    return data, np.flatnonzero(mask)


def toy_task(seed: int, X_ref: np.ndarray, n_expected: float, cfg_json: str, w_ref: np.ndarray | None = None,
             X_signal: np.ndarray | None = None, n_signal: float = 0.0, extended: bool = True) -> dict:
    """One pseudo-experiment (module level so Dask can ship it): data drawn from the reference (plus
    Poisson(n_signal) events of X_signal if given), the rest of the reference as reference; returns t and time.

    extended: N(SM) = n_expected and a Poisson number of data events (the extended likelihood ratio: the total
    count is part of the test); otherwise exactly round(n_expected) events, i.e. the toys of a shape-only test
    whose observed fit used N(SM) = N_D."""
    cfg = NPLMConfig.model_validate_json(cfg_json)
    rng = np.random.default_rng(seed)
    d_idx, r_idx = toy_split(len(X_ref), n_expected, rng, w_ref, extended)
    X_data = X_ref[d_idx]
    if X_signal is not None and n_signal > 0:
        k = int(rng.poisson(n_signal))
        X_data = np.concatenate([X_data, X_signal[rng.choice(len(X_signal), k, replace=len(X_signal) < k)]])
    wr = None if w_ref is None else w_ref[r_idx]
    res = fit(X_ref[r_idx], X_data, cfg, w_ref=wr, n_expected=n_expected if extended else None, seed=seed)
    out = {"seed": seed, "t": res.t, "seconds": res.seconds, "n_data": len(X_data)}
    for k in ("iterations", "converged", "at_clip"):
        if k in res.info:
            out[k] = res.info[k]
    return out


def null_toys(X_ref: np.ndarray, cfg: NPLMConfig = NPLMConfig(), *, n_expected: float, w_ref: np.ndarray | None = None,
              n_toys: int | None = None, seed: int = 1000, scheduler: str | None = None, n_workers: int | None = None,
              client=None, extended: bool = True, details: bool = False) -> np.ndarray | list[dict]:
    """t under H0 for `n_toys` toys drawn from the reference (see `toy_task`), on Dask; `details=True`
    returns each toy's dict (t, seconds, optimiser iterations ...) instead."""
    from l1ad.offline.toys_dask import map_toys

    n = cfg.n_toys if n_toys is None else n_toys
    shared = {"X_ref": np.asarray(X_ref, dtype=np.float64)}
    if w_ref is not None:
        shared["w_ref"] = np.asarray(w_ref, dtype=np.float64)
    out = map_toys(toy_task, [seed + i for i in range(n)], shared=shared, scheduler=scheduler, n_workers=n_workers,
                   client=client, n_expected=float(n_expected), cfg_json=cfg.model_dump_json(), extended=bool(extended))
    return out if details else np.array([o["t"] for o in out])


# ---------------------------------------------------------------------- p-values
def empirical_p(t_obs: float, t_toys: np.ndarray) -> float:
    """(1 + #{t_toy >= t_obs}) / (1 + n_toys)."""
    t_toys = np.asarray(t_toys)
    return float((1 + np.sum(t_toys >= t_obs)) / (1 + t_toys.size))


def z_from_p(p: float) -> float:
    """One-sided Gaussian significance of a p-value (isf keeps precision for tiny p)."""
    return float(stats.norm.isf(p))


@dataclass
class Chi2Fit:
    dof: float
    ks_p: float
    ks_stat: float

    def sf(self, t: float) -> float:
        return float(stats.chi2.sf(t, self.dof))


def fit_chi2(t_toys: np.ndarray) -> Chi2Fit:
    """Maximum-likelihood chi2(dof) to the toy t's (loc 0, scale 1, dof free) and the KS p-value against it.

    The KS p-value is computed with the fitted dof, so it is somewhat optimistic (Lilliefors effect)."""
    t = np.asarray(t_toys, dtype=np.float64)
    t_pos = np.clip(t, 1e-9, None)  # a chi2 has no mass at t <= 0; tiny negative t's from the fit are clipped
    dof, _, _ = stats.chi2.fit(t_pos, floc=0, fscale=1)
    ks = stats.kstest(t, stats.chi2(dof).cdf)
    return Chi2Fit(float(dof), float(ks.pvalue), float(ks.statistic))


def chi2_check(t_toys: np.ndarray, dof: float) -> dict:
    """How well chi2(dof) (e.g. dof = the network's parameter count, the NPLM asymptotic) describes the toys:
    KS p against it (no parameter fitted) and the ML-fitted dof beside it."""
    t = np.asarray(t_toys, dtype=np.float64)
    ks = stats.kstest(t, stats.chi2(dof).cdf)
    c = fit_chi2(t)
    return {"n_toys": int(t.size), "dof": float(dof), "ks_p": float(ks.pvalue), "ks_stat": float(ks.statistic),
            "dof_fitted": c.dof, "ks_p_fitted": c.ks_p, "mean": float(t.mean()), "variance": float(t.var(ddof=1))}


CHI2_KS_MIN = 0.01  # a chi2 whose KS p against the toys is below this does not describe them


def quoted_p(t_obs: float, t_toys: np.ndarray, chi2: Chi2Fit) -> tuple[float, str]:
    """The p-value to quote and how it was obtained.

    The toys' empirical p whenever some toy reaches t_obs; beyond all toys, the chi2 extrapolation only if
    the chi2 describes the toys (KS p >= CHI2_KS_MIN), else the toys' bound 1 / (1 + n_toys) (an upper limit)."""
    t_toys = np.asarray(t_toys)
    p_emp = empirical_p(t_obs, t_toys)
    if np.any(t_toys >= t_obs):
        return p_emp, f"toys ({t_toys.size})"
    if chi2.ks_p >= CHI2_KS_MIN:
        return min(chi2.sf(t_obs), p_emp), f"chi2 extrapolation (dof {chi2.dof:.1f} fitted to {t_toys.size} toys, KS p {chi2.ks_p:.2g})"
    return p_emp, f"toys ({t_toys.size}): upper bound, t_obs beyond every toy and the chi2 does not describe them"


@dataclass
class NPLMResult:
    t_obs: float
    t_toys: np.ndarray
    p_empirical: float
    chi2: Chi2Fit
    p_chi2: float
    z_empirical: float
    z_chi2: float
    fit: NPLMFit
    p: float = float("nan")
    p_method: str = ""
    extended: bool = True

    def summary(self) -> dict:
        out = {
            "t_obs": self.t_obs, "n_toys": int(self.t_toys.size), "toy_median": float(np.median(self.t_toys)),
            "p": self.p, "z": z_from_p(self.p), "p_method": self.p_method,
            "extended": self.extended,
            "p_empirical": self.p_empirical, "z_empirical": self.z_empirical, "chi2_dof": self.chi2.dof,
            "chi2_describes_toys": bool(self.chi2.ks_p >= CHI2_KS_MIN),
            "chi2_ks_p": self.chi2.ks_p, "p_chi2": self.p_chi2, "z_chi2": self.z_chi2, "fit_seconds": self.fit.seconds,
        }
        if "n_params" in self.fit.info:  # the NN: the papers' asymptotic chi2(dof = parameters)
            c = chi2_check(self.t_toys, self.fit.info["n_params"])
            out.update(n_params=self.fit.info["n_params"], chi2_nparams_ks_p=c["ks_p"],
                       p_chi2_nparams=float(stats.chi2.sf(self.t_obs, self.fit.info["n_params"])))
        return out


def nplm_test(X_ref: np.ndarray, X_data: np.ndarray, cfg: NPLMConfig = NPLMConfig(), *, w_ref: np.ndarray | None = None,
              w_data: np.ndarray | None = None, n_expected: float | None = None, t_toys: np.ndarray | None = None,
              extended: bool | None = None, scheduler: str | None = None, n_workers: int | None = None,
              toy_seed: int = 1000) -> NPLMResult:
    """The whole test on two feature arrays (+ weights): observed t, null toys on Dask (unless `t_toys` are
    given, e.g. reused across data sets with the same reference), the quoted p (`quoted_p`: toys, chi2 only to
    extrapolate beyond them when it describes them), and the empirical and chi2 p and Z.

    Extended (the default whenever `n_expected` is given, i.e. the total count is meaningful): N(SM) =
    n_expected in the observed fit and Poisson(N(SM)) events per toy, so an excess in the total count counts.
    Shape only (no `n_expected`): N(SM) = the data's weight sum in the observed fit and exactly that many
    events per toy.

    For triggered data vs a zero-bias reference: X_ref = zero-bias features with their weights, X_data = the
    triggered data, n_expected = the number of data events expected under the reference (e.g. from the rate)."""
    ext = (n_expected is not None) if extended is None else bool(extended)
    if ext and n_expected is None:
        raise ValueError("the extended test needs n_expected (the number of data events expected under the reference)")
    obs = fit(X_ref, X_data, cfg, w_ref=w_ref, w_data=w_data, n_expected=n_expected if ext else None)
    obs.info["extended"] = ext
    if t_toys is None:
        t_toys = null_toys(X_ref, cfg, n_expected=obs.info["n_expected"], w_ref=w_ref, seed=toy_seed,
                           scheduler=scheduler, n_workers=n_workers, extended=ext)
    t_toys = np.asarray(t_toys, dtype=np.float64)
    p_emp = empirical_p(obs.t, t_toys)
    c2 = fit_chi2(t_toys)
    p_c2 = c2.sf(obs.t)
    p, how = quoted_p(obs.t, t_toys, c2)
    return NPLMResult(obs.t, t_toys, p_emp, c2, p_c2, z_from_p(p_emp), z_from_p(p_c2), obs, p, how, ext)


# ---------------------------------------------------------------------- NN weight clipping
def tune_weight_clip(X_ref: np.ndarray, cfg: NPLMConfig, *, n_expected: float, clips=(1.0, 2.0, 4.0, 8.0),
                     n_toys: int = 40, seed: int = 50_000, scheduler: str | None = None, client=None,
                     n_workers: int | None = None) -> dict:
    """The NPLM recipe for the NN: run null toys at several weight clips and pick the clip at which the fitted
    chi2 dof equals the number of network parameters (interpolated linearly in log clip between the two
    scanned clips that bracket it; the nearest scanned clip if none do). Check the choice with fresh toys
    (`chi2_check`) before quoting chi2(dof = parameters) p-values."""
    if cfg.model != "nn":
        raise ValueError("weight clipping is a parameter of the NN model")
    n_par = NumpyNet([np.asarray(X_ref).reshape(len(X_ref), -1).shape[1], *cfg.hidden, 1]).n_params
    scan = []
    for c in sorted(float(x) for x in clips):
        t = null_toys(X_ref, cfg.model_copy(update={"weight_clip": c}), n_expected=n_expected, n_toys=n_toys,
                      seed=seed, scheduler=scheduler, client=client, n_workers=n_workers)
        scan.append({"clip": c, **chi2_check(t, n_par), "t": t.tolist()})
    d = np.array([r["dof_fitted"] for r in scan]) - n_par
    lc = np.log([r["clip"] for r in scan])
    best = float(scan[int(np.argmin(np.abs(d)))]["clip"])
    for i in range(len(d) - 1):
        if d[i] <= 0 <= d[i + 1] and d[i + 1] > d[i]:
            best = float(np.exp(lc[i] + (lc[i + 1] - lc[i]) * (-d[i]) / (d[i + 1] - d[i])))
            break
    return {"n_params": n_par, "clip": best, "scan": scan}


test_statistic.__test__ = False  # not a pytest test, even when imported into a test module

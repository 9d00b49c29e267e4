"""CLs upper limits on a window's signal yield (asymptotic, Cowan-Cranmer-Gross-Vitells 1007.1727) and the
Asimov discovery reach, for the sliding-window model of `offline.bumphunt`.

Model: ``n_W ~ Pois(s + alpha b)``, ``n_S ~ Pois(b)``, and an auxiliary measurement ``ln alpha0 ~
N(ln alpha, sigma^2)`` (sigma from the background fit, `offline.bkgsyst.ln_alpha_sigma`; 0 = alpha known).
b is profiled in closed form (root of ``alpha(1+alpha) b^2 + [(1+alpha)s - alpha(n_W+n_S)] b - n_S s = 0``),
ln alpha numerically. With ``D(s)`` = -2 ln L(s, profiled) relative to the unconditional maximum:

* ``q~_s = D(s) - D(max(s_hat, 0))`` for s_hat <= s, else 0 (CCGV eq. 16);
* the Asimov data set of the background-only hypothesis (nuisances fitted at s = 0) gives ``q_{s,A}`` and
  ``sigma_s^2 = s^2 / q_{s,A}``;
* ``CLs = p_s / (1 - p_b)``: for ``q~ <= q_A``: ``p_s = 1 - Phi(sqrt q~)``, ``1 - p_b = Phi(sqrt q_A - sqrt q~)``;
  otherwise ``p_s = 1 - Phi((q~ + q_A) / (2 sqrt q_A))``, ``1 - p_b = 1 - Phi((q~ - q_A) / (2 sqrt q_A))``;
* expected limits (band N = -2..2): ``s_up = sigma_s (Phi^-1(1 - CL_alpha Phi(N)) + N)`` (CCGV eq. 89), solved
  with sigma_s evaluated at s_up.

The Asimov discovery significance with a background uncertainty sigma_b (Cowan, "Discovery sensitivity for
a counting experiment with background uncertainty"):

    Z_A = sqrt(2 [ (s+b) ln((s+b)(b+sb^2) / (b^2 + (s+b) sb^2)) - (b^2/sb^2) ln(1 + sb^2 s / (b (b + sb^2))) ])
"""
from __future__ import annotations

import math

from scipy import optimize, special, stats

__all__ = ["asimov_z", "cls", "discovery_signal", "profiled_nll2", "upper_limits", "window_limits"]


def _check(n_w: float, n_s: float, alpha: float, sigma: float) -> None:
    for name, v in (("n_w", n_w), ("n_s", n_s), ("sigma", sigma)):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {v}")
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be finite and > 0, got {alpha}")


def _b_hat(s: float, alpha: float, n_w: float, n_s: float) -> float:
    A = alpha * (1.0 + alpha)
    B = (1.0 + alpha) * s - alpha * (n_w + n_s)
    disc = B * B + 4.0 * A * n_s * s
    if B < 0:
        return (-B + math.sqrt(disc)) / (2.0 * A)
    return 2.0 * n_s * s / (B + math.sqrt(disc)) if n_s * s > 0 else 0.0


def _nll2_fixed(s: float, theta: float, n_w: float, n_s: float, theta0: float, sigma: float) -> float:
    a = math.exp(theta)
    b = _b_hat(s, a, n_w, n_s)
    mu_w = s + a * b
    if mu_w <= 0 and n_w > 0:
        return math.inf
    d = 2.0 * (mu_w - n_w + special.xlogy(n_w, n_w) - special.xlogy(n_w, mu_w))
    d += 2.0 * (b - n_s + special.xlogy(n_s, n_s) - special.xlogy(n_s, b))
    if sigma > 0:
        d += (theta - theta0) ** 2 / sigma**2
    return float(d)


def profiled_nll2(s: float, n_w: float, n_s: float, alpha: float, sigma: float = 0.0) -> float:
    """-2 ln L(s) with b and ln alpha profiled, relative to the saturated model (>= 0)."""
    th0 = math.log(alpha)
    if sigma == 0:
        return _nll2_fixed(s, th0, n_w, n_s, th0, 0.0)
    r = optimize.minimize_scalar(lambda th: _nll2_fixed(s, th, n_w, n_s, th0, sigma),
                                 bounds=(th0 - 8 * sigma, th0 + 8 * sigma), method="bounded",
                                 options={"xatol": 1e-7 * max(sigma, 1e-6)})
    return float(min(r.fun, _nll2_fixed(s, th0, n_w, n_s, th0, sigma)))


def _asimov(n_w: float, n_s: float, alpha: float, sigma: float) -> tuple[float, float, float]:
    """Background-only Asimov data (n_W, n_S, alpha0) from the nuisances fitted at s = 0."""
    th0 = math.log(alpha)
    if sigma == 0:
        th = th0
    else:
        th = optimize.minimize_scalar(lambda t: _nll2_fixed(0.0, t, n_w, n_s, th0, sigma),
                                      bounds=(th0 - 8 * sigma, th0 + 8 * sigma), method="bounded").x
    a = math.exp(th)
    b = _b_hat(0.0, a, n_w, n_s)
    return a * b, b, a


def _q_tilde(s: float, n_w: float, n_s: float, alpha: float, sigma: float) -> float:
    s_hat = n_w - alpha * n_s
    if s_hat > s:
        return 0.0
    ref = profiled_nll2(max(s_hat, 0.0), n_w, n_s, alpha, sigma) if s_hat < 0 else 0.0
    return max(profiled_nll2(s, n_w, n_s, alpha, sigma) - ref, 0.0)


def cls(s: float, n_w: float, n_s: float, alpha: float, sigma: float = 0.0) -> float:
    """Asymptotic CLs of signal yield s in the window."""
    _check(n_w, n_s, alpha, sigma)
    if s <= 0:
        return 1.0
    q = _q_tilde(s, n_w, n_s, alpha, sigma)
    aw, as_, aa = _asimov(n_w, n_s, alpha, sigma)
    qa = profiled_nll2(s, aw, as_, aa, sigma)
    if qa <= 0:
        return 1.0
    if q <= qa:
        ps, clb = stats.norm.sf(math.sqrt(q)), stats.norm.cdf(math.sqrt(qa) - math.sqrt(q))
    else:
        r = 2.0 * math.sqrt(qa)
        ps, clb = stats.norm.sf((q + qa) / r), stats.norm.sf((q - qa) / r)
    return float(ps / clb) if clb > 0 else 1.0


def _bracket(f, start: float) -> float:
    hi = start
    for _ in range(60):
        if f(hi) < 0:
            return hi
        hi *= 2.0
    raise RuntimeError("no upper bracket for the limit")


def upper_limits(n_w: float, n_s: float, alpha: float, sigma: float = 0.0, cl: float = 0.95) -> dict:
    """Observed and expected (median, +-1, +-2 sigma) CLs upper limits on the window's signal yield."""
    _check(n_w, n_s, alpha, sigma)
    if not 0 < cl < 1:
        raise ValueError(f"cl must be in (0, 1), got {cl}")
    size = 1.0 - cl
    b_w = alpha * max(n_s, 1.0)
    scale = max(1.0, 3.0 * math.sqrt(b_w + (sigma * b_w) ** 2) + 3.0)
    f_obs = lambda s: cls(s, n_w, n_s, alpha, sigma) - size  # noqa: E731
    hi = _bracket(f_obs, scale + max(n_w - alpha * n_s, 0.0))
    obs = optimize.brentq(f_obs, 1e-9 * scale, hi, xtol=1e-6 * scale)
    aw, as_, aa = _asimov(n_w, n_s, alpha, sigma)

    def sig_s(s: float) -> float:
        qa = profiled_nll2(s, aw, as_, aa, sigma)
        return s / math.sqrt(qa) if qa > 0 else math.inf

    exp = {}
    for k in (-2, -1, 0, 1, 2):
        z = stats.norm.isf(size * stats.norm.cdf(k)) + k
        g = lambda s: s - sig_s(s) * z  # noqa: E731
        h = scale
        while g(h) < 0:
            h *= 2.0
        exp[k] = optimize.brentq(g, 1e-9 * scale, h, xtol=1e-6 * scale)
    return {"observed": float(obs), "expected": float(exp[0]), "expected_m1": float(exp[-1]),
            "expected_p1": float(exp[1]), "expected_m2": float(exp[-2]), "expected_p2": float(exp[2]), "cl": cl}


def asimov_z(s: float, b: float, sigma_b: float = 0.0) -> float:
    """Median discovery significance of s over b with absolute background uncertainty sigma_b."""
    if s <= 0:
        return 0.0
    if b <= 0:
        return math.inf
    if sigma_b <= 0:
        return math.sqrt(2.0 * ((s + b) * math.log1p(s / b) - s))
    v = sigma_b**2
    t1 = (s + b) * math.log((s + b) * (b + v) / (b * b + (s + b) * v))
    t2 = (b * b / v) * math.log1p(v * s / (b * (b + v)))
    return math.sqrt(max(2.0 * (t1 - t2), 0.0))


def discovery_signal(z: float, b: float, sigma_b: float = 0.0) -> float:
    """Signal yield with median significance z (inverse of `asimov_z`)."""
    if b <= 0:
        return 0.0
    hi = max(10.0, 2 * z * math.sqrt(b + sigma_b**2) + z * z)
    while asimov_z(hi, b, sigma_b) < z:
        hi *= 2
    return float(optimize.brentq(lambda s: asimov_z(s, b, sigma_b) - z, 0.0, hi, xtol=1e-9 * hi))


def window_limits(n_w: float, n_s: float, alpha: float, sigma: float = 0.0, cl: float = 0.95) -> dict:
    """CLs limits of one window next to its Asimov 3 and 5 sigma discovery yields (b = alpha n_S, with the
    sideband's Poisson error and the fit's relative error sigma in sigma_b)."""
    lim = upper_limits(n_w, n_s, alpha, sigma, cl)
    b = alpha * n_s
    sb = b * math.sqrt((1.0 / n_s if n_s > 0 else 0.0) + sigma**2)
    lim.update({"background": b, "background_error": sb, "asimov_3sigma": discovery_signal(3.0, b, sb),
                "asimov_5sigma": discovery_signal(5.0, b, sb)})
    return lim

"""FixedFormat against the real thing: the Xilinx ap_fixed headers (as bundled with hls4ml) compiled with g++.

Random (source format, destination format) pairs cover every rounding and overflow mode, signed and unsigned,
negative and >width integer bits; each converts edge and random codes (``dst_t b = a;``) and doubles
(``dst_t b = (double)x;``). The Python results must be identical.
"""
from __future__ import annotations

import importlib.util
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from l1ad.firmware import OVERFLOW_MODES, ROUNDING_MODES, FixedFormat


def _ap_types_dir() -> Path | None:
    spec = importlib.util.find_spec("hls4ml")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "templates" / "vivado" / "ap_types"
    return d if (d / "ap_fixed.h").exists() else None


AP_DIR = _ap_types_dir()
pytestmark = pytest.mark.skipif(shutil.which("g++") is None or AP_DIR is None, reason="needs g++ and hls4ml's ap_types headers")


def _cpp_type(f: FixedFormat) -> str:
    return f"ap_{'' if f.signed else 'u'}fixed<{f.width},{f.integer},AP_{f.rounding},AP_{f.overflow}>"


def _rand_fmt(rng: random.Random, max_w: int, modes: bool) -> FixedFormat:
    w = rng.randint(1, max_w)
    return FixedFormat(w, rng.randint(-6, w + 6), rng.random() < 0.6,
                       rng.choice(ROUNDING_MODES) if modes else "TRN", rng.choice(OVERFLOW_MODES) if modes else "WRAP")


def _cases(seed: int = 20261122, n_pairs: int = 160, n_float: int = 60):
    rng = random.Random(seed)
    pairs = []
    for k in range(n_pairs):
        src = _rand_fmt(rng, 40, False)
        if k % 4 == 0:  # near-identical formats exercise SAT_SYM's minimum code and 1-bit carries
            dst = FixedFormat(src.width + rng.randint(-1, 1) or 1, src.integer + rng.randint(-1, 1), rng.random() < 0.6,
                              rng.choice(ROUNDING_MODES), rng.choice(OVERFLOW_MODES))
        else:
            dst = _rand_fmt(rng, 40, True)
        edge = {src.min_code, src.max_code, 0, min(1, src.max_code), max(-1, src.min_code), src.min_code + (src.max_code > src.min_code)}
        codes = sorted(edge) + [rng.randint(src.min_code, src.max_code) for _ in range(20)]
        pairs.append((src, dst, codes))
    floats = []
    for _ in range(n_float):
        dst = _rand_fmt(rng, 40, True)
        xs = [0.0, -0.0, 0.5, -0.5, 1.5, -2.5]
        scale = float(dst.lsb)
        xs += [(rng.randint(-4 * (1 << min(dst.width, 30)), 4 * (1 << min(dst.width, 30))) + rng.choice([0, 0.5, 0.25, 0.75])) * scale for _ in range(14)]
        xs += [rng.uniform(-1, 1) * float(max(abs(dst.min_value), dst.max_value)) * 1.5 for _ in range(8)]
        floats.append((dst, xs))
    return pairs, floats


def _program(pairs, floats) -> str:
    lines = ['#include "ap_fixed.h"', "#include <cstdio>", "#include <cmath>", "int main() {"]
    for k, (src, dst, codes) in enumerate(pairs):
        lines.append("  {")
        lines.append(f"    static const double v[] = {{{', '.join(float(c * src.lsb).hex() for c in codes)}}};")
        lines.append(f"    for (int i = 0; i < {len(codes)}; ++i) {{ {_cpp_type(src)} a = v[i]; {_cpp_type(dst)} b = a;"
                     f" std::printf(\"P {k} %d %.17g\\n\", i, std::ldexp(b.to_double(), {dst.frac})); }}")
        lines.append("  }")
    for k, (dst, xs) in enumerate(floats):
        lines.append("  {")
        lines.append(f"    static const double v[] = {{{', '.join(float(x).hex() for x in xs)}}};")
        lines.append(f"    for (int i = 0; i < {len(xs)}; ++i) {{ {_cpp_type(dst)} b = v[i];"
                     f" std::printf(\"F {k} %d %.17g\\n\", i, std::ldexp(b.to_double(), {dst.frac})); }}")
        lines.append("  }")
    lines += ["  return 0;", "}"]
    return "\n".join(lines).replace("0x", "0x").replace("inf", "INFINITY")


@pytest.fixture(scope="module")
def cpp_results(tmp_path_factory):
    pairs, floats = _cases()
    d = tmp_path_factory.mktemp("apfixed")
    src = d / "conv.cpp"
    src.write_text(_program(pairs, floats))
    exe = d / "conv"
    # -DNDEBUG: ap_private asserts "reading bit beyond MSB" when more bits are dropped than the source has
    # (e.g. ap_ufixed<10,-3> -> ap_fixed<39,37,RND_MIN_INF>); the converted values are still right.
    r = subprocess.run(["g++", "-std=gnu++14", "-O0", "-w", "-DNDEBUG", f"-I{AP_DIR}", str(src), "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split("\n")
    res: dict[tuple[str, int], dict[int, int]] = {}
    for line in out:
        if not line:
            continue
        kind, k, i, v = line.split()
        res.setdefault((kind, int(k)), {})[int(i)] = int(float(v))
    return pairs, floats, res


def test_requantize_matches_ap_fixed(cpp_results):
    pairs, _, res = cpp_results
    bad = []
    for k, (src, dst, codes) in enumerate(pairs):
        got = [int(v) for v in dst.requantize(np.array(codes, dtype=np.int64), src)]
        want = [res[("P", k)][i] for i in range(len(codes))]
        if got != want:
            bad.append((str(src), str(dst), [(c, g, w) for c, g, w in zip(codes, got, want) if g != w][:3]))
    assert not bad, f"{len(bad)} of {len(pairs)} format pairs differ from ap_fixed: {bad[:5]}"


def test_quantize_float_matches_ap_fixed(cpp_results):
    _, floats, res = cpp_results
    bad = []
    for k, (dst, xs) in enumerate(floats):
        got = [int(v) for v in dst.quantize(np.array(xs, dtype=np.float64))]
        want = [res[("F", k)][i] for i in range(len(xs))]
        if got != want:
            bad.append((str(dst), [(x, g, w) for x, g, w in zip(xs, got, want) if g != w][:3]))
    assert not bad, f"{len(bad)} of {len(floats)} formats differ from ap_fixed double conversion: {bad[:5]}"

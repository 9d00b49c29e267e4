"""Architecture config, input scaler, score contract and quantization grids (numpy only: no TensorFlow / torch)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from l1ad.trigger.events import N_INPUTS
from l1ad.trigger.l1units import hw_inputs
from l1ad.trigger.models import ArchitectureConfig, QuantFormat
from l1ad.trigger.scaler import DEFAULT_SHIFT, InputScaler
from l1ad.trigger.scores import input_mask_hw, masked_sq_error, mu_squared, score_format
from l1ad.trigger.toy import toy_events

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------- quantization grid
def test_quant_format_rounds_half_to_even_and_saturates():
    f = QuantFormat(12, 3, signed=True)  # LSB 2**-8, range [-8, 8 - 2**-8]
    assert (f.frac, f.lsb, f.min, f.max) == (8, 2**-8, -8.0, 8 - 2**-8)
    lsb = f.lsb
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.49, 0.51]) * lsb
    assert np.array_equal(f.quantize(x) / lsb, [0, 2, 2, 0, -2, 0, 1])
    assert np.array_equal(f.quantize([100.0, -100.0, 8.0, -8.0]), [f.max, -8.0, f.max, -8.0])
    u = QuantFormat(8, 3, signed=False)  # quantized_relu(8, 3): LSB 2**-5, [0, 8 - 2**-5]
    assert (u.frac, u.min, u.max) == (5, 0.0, 8 - 2**-5)
    assert np.array_equal(u.quantize([-1.0, 0.5 * 2**-5, 1.5 * 2**-5, 9.0]), [0.0, 0.0, 2 * 2**-5, u.max])
    assert f.hls_type == "ap_fixed<12,4,AP_RND_CONV,AP_SAT>" and u.hls_type == "ap_ufixed<8,3,AP_RND_CONV,AP_SAT>"
    assert f.on_grid(f.quantize(np.linspace(-9, 9, 101))) and not f.on_grid([lsb / 3])


def test_quant_format_agrees_with_firmware_fixed_format():
    fixed = pytest.importorskip("l1ad.firmware.fixed")
    rng = np.random.default_rng(0)
    for fmt in (QuantFormat(12, 3, True), QuantFormat(8, 3, False), QuantFormat(8, 0, True)):
        x = np.concatenate([rng.normal(0, 4, 5000), (np.arange(-600, 600) + 0.5) * fmt.lsb])
        codes, _, _ = fixed.quantize_float(x, fixed.FixedFormat.parse(fmt.hls_type))
        assert np.array_equal(np.asarray(codes, dtype=np.int64), fmt.to_int(x))


# ---------------------------------------------------------------------- architecture config
def test_default_architectures():
    ae, vae = ArchitectureConfig.default("ae"), ArchitectureConfig.default("vae")
    assert [(l.name, l.n_in, l.n_out, l.activation) for l in ae.deployed_layers()] == [
        ("enc_1", 57, 32, "relu"), ("enc_2", 32, 16, "relu"), ("latent", 16, 8, "relu"),
        ("dec_1", 8, 16, "relu"), ("dec_2", 16, 32, "relu"), ("output", 32, 57, "linear")]
    assert [(l.name, l.n_in, l.n_out) for l in vae.deployed_layers()] == [("enc_1", 57, 32), ("enc_2", 32, 16), ("mu", 16, 8)]
    assert max(ae.accumulator_bits().values()) <= 24
    assert ArchitectureConfig.resolve("vae") == vae


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_config_files_match_builtin_defaults(kind):
    """configs/arch_<kind>.yaml documents the defaults; it must not drift from the code."""
    assert ArchitectureConfig.from_yaml(ROOT / "configs" / f"arch_{kind}.yaml") == ArchitectureConfig.default(kind)


def test_yaml_round_trip_and_errors(tmp_path):
    a = ArchitectureConfig(name="small", encoder=[24], latent=4, decoder=[20], weight_quant={"bits": 6, "integer": 0})
    p = tmp_path / "a.yaml"
    p.write_text(a.to_yaml())
    assert ArchitectureConfig.from_yaml(p) == a
    assert a.config_hash() == ArchitectureConfig.from_yaml(p).config_hash() != ArchitectureConfig().config_hash()
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        ArchitectureConfig.from_yaml(tmp_path / "nope.yaml")
    p.write_text("kind: ae\nlatentt: 3\n")
    with pytest.raises(ValueError, match="latentt"):
        ArchitectureConfig.from_yaml(p)
    with pytest.raises(ValidationError, match="accumulator"):  # 16-bit input x 8-bit weights x 57 > float32's 24 bits
        ArchitectureConfig(input_quant={"bits": 16, "integer": 5})


def test_layer_size_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"n_inputs=56 .* has 57"):
        ArchitectureConfig(n_inputs=56).check_n_inputs(57)


# ---------------------------------------------------------------------- scaler
def _toy_hw(n=4000, seed=0):
    b = toy_events(n, seed=seed)
    return hw_inputs(b.objects).astype(np.float64), b


def test_scaler_formula_and_fit_rules():
    x, _ = _toy_hw()
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(x))
    s = InputScaler.fit(x, w)
    assert s.offset.shape == s.shift.shape == (N_INPUTS,) and s.offset.dtype == s.shift.dtype == np.int64
    assert (s.offset[0::3] == 0).all() and (s.shift >= 0).all()  # pT: pure shifts, absent stays 0
    assert np.array_equal(s.transform(x), (x - s.offset) * 2.0 ** (-s.shift.astype(float)))
    # scaled RMS over present entries lies in (0.5, 1] wherever the feature varies
    present = input_mask_hw(x)
    xs = s.transform(x)
    for j in [0, 1, 2, 27, 28, 29]:
        sel = present[:, j]
        rms = np.sqrt(np.average(xs[sel, j] ** 2, weights=w[sel]))
        assert 0.5 < rms <= 1.0 or (s.shift[j] == 0 and rms <= 1.0), (j, rms)
    # MET eta is always 0: offset 0, shift 0
    assert (s.offset[1], s.shift[1]) == (0, 0)


def test_scaler_weights_act_like_repeated_events():
    x, _ = _toy_hw(3000)
    w = np.random.default_rng(2).integers(1, 4, len(x))
    # (min_count counts events, not weights: disable pooling for the comparison)
    assert InputScaler(min_count=1).fit(x, w) == InputScaler(min_count=1).fit(np.repeat(x, w, axis=0))
    assert InputScaler(min_count=1).fit(x, w) != InputScaler(min_count=1).fit(x)


def test_scaler_pools_rare_features_and_defaults_unseen():
    x, _ = _toy_hw(3000)
    x[:, 51:57] = 0  # 9th and 10th jets: absent ...
    x[:5, 51:54] = (100, 30, -40)  # ... except the 9th in 5 events (< min_count)
    s = InputScaler.fit(x)
    assert {51, 52, 53, 54, 55, 56} <= set(s.info["pooled_features"])
    assert s.shift[51] == s.shift[54] and s.shift[52] == s.shift[55] and s.offset[51] == 0
    assert 27 not in s.info["pooled_features"]  # the leading jet has its own statistics
    x[:, 27:57] = 0  # no jets at all: type defaults
    s2 = InputScaler.fit(x)
    assert tuple(s2.shift[27:30]) == DEFAULT_SHIFT and (s2.offset[27:30] == 0).all()


def test_scaler_serialisation_and_errors():
    x, _ = _toy_hw(2000)
    s = InputScaler().fit(x)
    d = s.to_dict()
    assert InputScaler.from_dict(d) == s
    assert InputScaler.from_dict(d).transform(x[:10]).tolist() == s.transform(x[:10]).tolist()
    with pytest.raises(ValueError, match="shape"):
        InputScaler.from_dict({"offset": [0] * 56, "shift": [0] * 56})
    with pytest.raises(ValueError, match="integers"):
        InputScaler.from_dict({"offset": [0.5] * 57, "shift": [0] * 57})
    with pytest.raises(ValueError, match="'shift'"):
        InputScaler.from_dict({"offset": [0] * 57})
    with pytest.raises(RuntimeError, match="not fitted"):
        InputScaler().transform(x)
    with pytest.raises(ValueError, match=r"\(N, 57\)"):
        s.transform(x[:, :56])
    with pytest.raises(ValueError, match="non-negative"):
        InputScaler.fit(x, -np.ones(len(x)))


# ---------------------------------------------------------------------- score contract
def test_input_mask_from_pt_codes_including_met():
    x = np.zeros((2, N_INPUTS))
    x[0, 0] = 3  # MET present
    x[0, 1 * 3 + 1] = 5  # eta of an absent e/gamma: still masked out
    x[1, 9 * 3] = 1  # first jet present
    x[1, 9 * 3 + 2] = -7
    m = input_mask_hw(x)
    assert m.shape == (2, N_INPUTS) and m.dtype == bool
    assert np.flatnonzero(m[0]).tolist() == [0, 1, 2]
    assert np.flatnonzero(m[1]).tolist() == [27, 28, 29]


def test_masked_sq_error_and_mu_squared_exact_values():
    x = np.array([[1.0, 2.0, 3.0], [0.5, -0.5, 0.25]])
    xhat = np.array([[0.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    mask = np.array([[True, False, True], [True, True, False]])
    assert masked_sq_error(x, xhat, mask).tolist() == [1.0 + 9.0, 0.25 + 1.0]  # no division
    assert masked_sq_error(x, xhat, mask).dtype == np.float64
    assert mu_squared(np.array([[1.0, -2.0], [0.5, 0.0]])).tolist() == [5.0, 0.25]
    with pytest.raises(ValueError, match="shape"):
        masked_sq_error(x, xhat[:, :2], mask)


def test_score_format_holds_the_largest_score():
    a = ArchitectureConfig()
    f = score_format("ae", a.input_format, a.output_format, 57)
    worst = 57 * (a.input_format.max - a.output_format.min) ** 2
    assert not f.signed and f.max >= worst and f.frac == 2 * a.input_format.frac
    v = score_format("vae", a.input_format, a.output_format, 8)
    assert v.max >= 8 * a.output_format.min**2

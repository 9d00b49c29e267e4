"""The HTML report is self-contained and renders in headless Chromium."""
from __future__ import annotations

import numpy as np
import pytest

from l1ad.report import Section, chromium, render, screenshot, write_report


def _png(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(np.arange(10), np.arange(10) ** 2, color="red", lw=8)
    fig.savefig(path)
    plt.close(fig)
    return path


def test_render_embeds_everything(tmp_path):
    png = _png(tmp_path / "a.png")
    page = render("T <1>", [Section("S", ["para"], [("cap", ["k", "v"], [["x<y", 1.23456789], ["b", True]])], [("fig", png)])])
    assert "src=\"data:image/png;base64," in page
    assert "x&lt;y" in page and "1.235" in page and "T &lt;1&gt;" in page
    assert "http" not in page.replace("http-equiv", "")  # nothing linked from outside


@pytest.mark.skipif(chromium() is None, reason="chromium not installed (make test installs it)")
def test_report_renders_in_chromium(tmp_path):
    png = _png(tmp_path / "a.png")
    page = write_report(tmp_path / "report.html", "l1ad report", [Section("Rates", ["hello"], [], [("curve", png)])])
    shot = screenshot(page, tmp_path / "shot.png", width=800, height=600)
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] == 600 and img.shape[1] == 800
    red = (img[..., 0] > 0.8) & (img[..., 1] < 0.3) & (img[..., 2] < 0.3)
    assert red.sum() > 200  # the embedded plot's thick red line is drawn on the page


def test_third_party_warnings_go_to_the_log_file(tmp_path, capsys):
    import logging
    import warnings

    from l1ad.runlog import steps, tee, third_party_to_file

    before = (list(logging.getLogger("tensorflow").handlers), logging.getLogger("tensorflow").propagate)
    with third_party_to_file(tmp_path / "run.log") as fh:
        warnings.warn("a library's deprecation notice", DeprecationWarning)
        logging.getLogger("tensorflow").warning("tf chatter")
        tee(lambda m: print(m, file=__import__("sys").stderr), fh)("stage x: done")
        with steps("rtl", 2) as step:
            step("one")
            step("two")
    err = capsys.readouterr().err
    text = (tmp_path / "run.log").read_text()
    assert "a library's deprecation notice" in text and "tf chatter" in text and "stage x: done" in text
    assert "deprecation notice" not in err and "tf chatter" not in err and "stage x: done" in err
    assert (list(logging.getLogger("tensorflow").handlers), logging.getLogger("tensorflow").propagate) == before
    with pytest.warns(UserWarning):  # warnings are shown normally again afterwards
        warnings.warn("after", UserWarning)


def test_data_info_on_a_log_file_says_not_an_event_file(tmp_path, capsys):
    from l1ad.cli import main

    log = tmp_path / "run.log"
    log.write_text("[10:43:05] stage data: running\n")
    assert main(["data", "info", str(log)]) == 2
    err = capsys.readouterr().err
    assert "not an event file (HDF5 signature missing)" in err and "corrupt" not in err


def test_render_flags_at_a_glance_and_toc():
    from l1ad.report import Cell, Flag

    page = render("T", [Section("Rates", ["p"], [("", ["a", "b"], [[Cell("x", "bad", "why <here>"), Cell(1.5, "ok")]])],
                                flags=[Flag("warn", "low statistics"), Flag("bad", "target missed")]),
                        Section("Firmware", flags=[Flag("ok", "0 mismatches")])], meta={"git commit": "abc"})
    glance = page[page.index("At a glance"):page.index("Contents")]
    assert glance.index("target missed") < glance.index("low statistics") < glance.index("0 mismatches")  # worst first
    assert "1 failed, 1 to read with care, 1 passed" in glance and "href='#rates'" in glance
    assert "<td class='bad' title='why &lt;here&gt;'>✘ x</td>" in page and "<td class='ok'>1.5</td>" in page
    assert "<h2 id='firmware'>Firmware</h2>" in page and "<th>git commit</th><td>abc</td>" in page


def test_latency_flag_gives_the_cycles_or_clock_needed():
    from l1ad.checks import latency

    (f,) = latency({"latency_cycles": 21, "clock_mhz": 240.0}, 50.0)
    assert f.level == "bad" and "87.5 ns exceeds the 50 ns budget" in f.text
    assert "at most 12 cycles at 240 MHz" in f.text and "420 MHz clock for 21 cycles" in f.text
    (g,) = latency({"latency_cycles": 12, "clock_mhz": 240.0}, 50.0)
    assert g.level == "ok"


def test_unreachable_targets_grouped_by_threshold():
    from l1ad.checks import unreachable_rates

    def c(t, thr, rate, ok):
        return {"target_hz": t, "threshold": thr, "rate_hz": rate, "rate_if_lower_hz": 11_600.0, "reachable": ok,
                "zb_n_eff": 2342.0, "zb_events_needed": int(2.86e8 / t)}

    flags = unreachable_rates([c(1e3, 7, 36.7, False), c(5e3, 7, 36.7, False), c(1e4, 7, 36.7, False),
                               c(1e5, 3, 96_000.0, True)], "qkeras")
    assert len(flags) == 1 and flags[0].level == "bad"
    assert "1, 5, 10 kHz not reached: all share threshold code 7" in flags[0].text
    assert "27–272x below target" in flags[0].text and "286,000 effective events" in flags[0].text
    assert unreachable_rates([c(1e5, 3, 96_000.0, True)], "qkeras")[0].level == "ok"


def test_closure_comment_where_the_ratio_departs_from_one():
    from l1ad.checks import closure

    table = {"thresholds_gev": [20, 30, 40, 50], "stitched_fraction": [0.5, 0.1, 0.04, 0.01],
             "minbias_fraction": [0.5, 0.1, 0.06, 0.0], "pull": [0.1, -0.5, -2.6, 0.0],
             "minbias_events": [700, 150, 63, 0], "compared": [True, True, True, False]}
    flags, text = closure(table, 1000)
    assert flags[0].level == "warn" and "1 of 3 compared thresholds (40 GeV)" in text and "reaches 0.67 at 40 GeV" in text
    table["pull"][2] = -1.0
    assert closure(table, 1000)[0][0].level == "ok"


def test_dense_estimate_counts_csd_terms():
    from l1ad.layers import dense_estimate, short

    w = np.array([[3, 0], [7, -1]])  # CSD digits: 3 = 4 - 1 (2), 7 = 8 - 1 (2), -1 (1), 0 (0)
    terms, lut, dsp = dense_estimate(w, np.array([1, 0]), 10, "shiftadd")
    assert terms == (2 + 2 + 1) + (1 + 0) and lut == ((5 - 1) + (1 - 1)) * 10 and dsp == 0
    assert dense_estimate(w, np.array([1, 0]), 10, "mult")[2] == 3  # one DSP per non-zero weight
    assert short("ap_fixed<8,1,RND_CONV,SAT>") == "fixed<8,1> rnd_conv,sat" and short("ap_ufixed<30,14>") == "ufixed<30,14>"

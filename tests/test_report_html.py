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

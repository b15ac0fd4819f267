"""posediff.viz.save_figure: a PNG written whole, the figure closed, other suffixes refused."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from posediff.viz import save_figure  # noqa: E402


def test_save_figure_writes_a_png_and_closes_the_figure(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]  # no temporary file left behind


def test_save_figure_refuses_another_format_and_still_closes(tmp_path):
    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match=r"p\.pdf.*\.png"):
        save_figure(fig, tmp_path / "p.pdf")
    assert not plt.fignum_exists(fig.number) and not list(tmp_path.iterdir())

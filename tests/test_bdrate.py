"""BD-rate (scipy's PCHIP, exact integration), the BD table, and RD plots.

Synthetic curves with known answers first, then the published Kodak curves in ../shared/rd_results
(skipped where that folder is absent), whose BD-rates vs CompressAI's VTM are listed in its README.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evc.eval.bdrate import BDRate, bd_quality, bd_rate, bd_rate_table, format_bd_table, mean_log_rate
from evc.eval.results import RDCurve, ResultsError, load_curve

# shared/ sits beside the checkout (/work/shared) or, in some copies, inside it.
_CANDIDATES = [Path(__file__).resolve().parents[n] / "shared" / "rd_results" for n in (2, 1)]
RD_RESULTS = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0])
needs_shared = pytest.mark.skipif(not RD_RESULTS.is_dir(), reason="shared/rd_results is not available")

# An RD curve shaped like a real codec's: PSNR rising ~ concavely with log-rate, 6 points.
ANCHOR_BPP = [0.08, 0.15, 0.3, 0.55, 0.9, 1.5]
ANCHOR_PSNR = [27.0, 29.3, 32.1, 34.8, 37.2, 40.1]
ANCHOR_MS_SSIM = [0.90, 0.94, 0.968, 0.982, 0.990, 0.995]


def curve(name: str, bpp, psnr=None, ms_ssim=None) -> RDCurve:
    return RDCurve(
        name=name,
        bpp=[float(v) for v in bpp],
        psnr=None if psnr is None else [float(v) for v in psnr],
        ms_ssim=None if ms_ssim is None else [float(v) for v in ms_ssim],
    )


def anchor() -> RDCurve:
    return curve("anchor", ANCHOR_BPP, ANCHOR_PSNR, ANCHOR_MS_SSIM)


# --- synthetic curves with a known answer -------------------------------------------------------


@pytest.mark.parametrize("factor", [0.9, 1.25, 0.5])
@pytest.mark.parametrize("metric", ["psnr", "ms-ssim"])
def test_scaled_rates_give_exactly_the_scale(factor: float, metric: str) -> None:
    test = curve("test", [b * factor for b in ANCHOR_BPP], ANCHOR_PSNR, ANCHOR_MS_SSIM)
    result = bd_rate(anchor(), test, metric)
    assert result.percent == pytest.approx((factor - 1) * 100, abs=1e-9)
    assert (result.anchor, result.test, result.metric) == ("anchor", "test", metric)


def test_named_factors() -> None:
    a = anchor()
    assert bd_rate(a, curve("t", [b * 0.9 for b in ANCHOR_BPP], ANCHOR_PSNR)).percent == pytest.approx(-10, abs=1e-9)
    assert bd_rate(a, curve("t", [b * 1.25 for b in ANCHOR_BPP], ANCHOR_PSNR)).percent == pytest.approx(25, abs=1e-9)


def test_identical_curves_give_zero_and_the_full_range() -> None:
    result = bd_rate(anchor(), anchor())
    assert result.percent == pytest.approx(0.0, abs=1e-12)
    assert result.overlap == (ANCHOR_PSNR[0], ANCHOR_PSNR[-1])


def test_order_of_points_does_not_matter() -> None:
    shuffled = [3, 0, 5, 1, 4, 2]
    test = curve("t", [ANCHOR_BPP[i] * 0.8 for i in shuffled], [ANCHOR_PSNR[i] for i in shuffled])
    assert bd_rate(anchor(), test).percent == pytest.approx(-20, abs=1e-9)


def test_quality_shift_on_a_log_linear_curve() -> None:
    # log10(bpp) = a + b q. The test curve reaches q + delta at the same rates, so at equal quality it
    # needs log10(bpp) = a + b (q - delta): BD-rate = 10^(-b delta) - 1, over [q0 + delta, q_max].
    a, b, delta = -4.0, 0.1, 0.7
    q = np.array([28.0, 30.5, 33.0, 36.0, 38.0, 41.0])
    bpp = 10 ** (a + b * q)
    result = bd_rate(curve("A", bpp, q), curve("T", bpp, q + delta))
    assert result.percent == pytest.approx((10 ** (-b * delta) - 1) * 100, abs=1e-9)
    assert result.overlap == pytest.approx((28.0 + delta, 41.0), abs=1e-12)
    # ... and the reverse direction is the exact inverse ratio.
    back = bd_rate(curve("T", bpp, q + delta), curve("A", bpp, q))
    assert (1 + back.percent / 100) * (1 + result.percent / 100) == pytest.approx(1.0, abs=1e-12)


def test_overlap_is_reported_when_ranges_differ() -> None:
    # The test curve covers only the middle of the anchor's range (plus a point beyond its top).
    q = [30.0, 33.0, 36.0, 42.0]
    test = curve("t", [0.25, 0.45, 0.8, 2.5], q)
    result = bd_rate(anchor(), test)
    assert result.overlap == (30.0, ANCHOR_PSNR[-1])
    assert bd_rate(test, anchor()).overlap == (30.0, ANCHOR_PSNR[-1])


def test_sign_convention_fewer_bits_is_negative() -> None:
    better = curve("better", ANCHOR_BPP, [p + 1.0 for p in ANCHOR_PSNR])
    assert bd_rate(anchor(), better).percent < 0
    assert bd_rate(better, anchor()).percent > 0


def test_duplicate_qualities_are_averaged_in_log_rate() -> None:
    # Two points at the same PSNR: their log-rates are averaged (geometric mean of the rates).
    bpp = list(ANCHOR_BPP) + [ANCHOR_BPP[2] * 1.21]
    psnr = list(ANCHOR_PSNR) + [ANCHOR_PSNR[2]]
    merged = list(ANCHOR_BPP)
    merged[2] *= 1.1  # sqrt(1.21)
    expected = bd_rate(anchor(), curve("m", merged, ANCHOR_PSNR)).percent
    assert bd_rate(anchor(), curve("d", bpp, psnr)).percent == pytest.approx(expected, abs=1e-12)
    assert expected > 0  # the duplicate changed the curve, so the test above is not vacuous


# --- PCHIP ------------------------------------------------------------------------------------

# Reference values computed once with scipy.interpolate.PchipInterpolator when evc had its own PCHIP
# (which matched them to 1e-12): the integral over [0.3, 3.7]. Case 1 hits the end-point limit (slope
# 3 m0 at x=0) and zero slopes at an extremum and a flat stretch; case 2 the end-point sign rule.
SCIPY_CASES = [
    ([0.0, 1.0, 2.0, 3.5, 5.0, 6.0], [0.0, 1.0, -4.0, -4.0, 0.0, 5.0], -7.652431399298708),
    ([0.0, 1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 11.0, 11.5, 11.7], 25.829613544372297),
]


@pytest.mark.parametrize("x, y, integral_03_37", SCIPY_CASES)
def test_mean_log_rate_matches_the_reference_integrals(x, y, integral_03_37) -> None:
    assert mean_log_rate(np.array(x), np.array(y), 0.3, 3.7) * 3.4 == pytest.approx(integral_03_37, abs=1e-12)


def test_mean_log_rate_two_points_is_the_line() -> None:
    assert mean_log_rate(np.array([1.0, 3.0]), np.array([2.0, 6.0]), 1.0, 3.0) == pytest.approx(4.0)


# --- errors and the table ---------------------------------------------------------------------


def test_no_overlap_is_an_error_naming_both_ranges() -> None:
    high = curve("high", [2.0, 3.0, 4.0], [41.0, 43.0, 45.0])
    with pytest.raises(ResultsError, match=r"do not overlap.*'anchor'.*27\.000-40\.100.*'high'.*41\.000-45\.000"):
        bd_rate(anchor(), high)


def test_touching_ranges_do_not_overlap() -> None:
    touching = curve("touch", [1.5, 3.0], [40.1, 44.0])
    with pytest.raises(ResultsError, match="do not overlap"):
        bd_rate(anchor(), touching)


def test_one_point_is_an_error() -> None:
    with pytest.raises(ResultsError, match=r"'single' has 1 distinct PSNR value.*at least 2"):
        bd_rate(anchor(), curve("single", [0.5], [33.0]))
    # two points at the same quality are still one distinct point
    with pytest.raises(ResultsError, match="'dup' has 1 distinct"):
        bd_rate(curve("dup", [0.4, 0.5], [33.0, 33.0]), anchor())


def test_missing_metric_is_an_error() -> None:
    psnr_only = curve("psnr-only", ANCHOR_BPP, ANCHOR_PSNR)
    with pytest.raises(ResultsError, match=r"'psnr-only' has no MS-SSIM"):
        bd_rate(anchor(), psnr_only, "ms-ssim")
    ms_only = curve("ms-only", ANCHOR_BPP, ms_ssim=ANCHOR_MS_SSIM)
    with pytest.raises(ResultsError, match=r"'ms-only' has no PSNR"):
        bd_rate(ms_only, anchor())


def test_unknown_metric_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown metric 'ssim'"):
        bd_rate(anchor(), anchor(), "ssim")
    with pytest.raises(ValueError, match="unknown metric"):
        bd_rate_table([anchor()], [anchor()], "psnr-rgb")


def test_non_positive_rate_is_an_error() -> None:
    with pytest.raises(ResultsError, match="bpp values must be positive"):
        bd_rate(anchor(), curve("zero", [0.0, 0.5, 1.0], [30.0, 34.0, 37.0]))


def test_table_gives_none_where_not_computable_and_formats() -> None:
    a = anchor()
    cheaper = curve("cheaper|x", [b * 0.9 for b in ANCHOR_BPP], ANCHOR_PSNR)
    high = curve("high", [2.0, 3.0, 4.0], [41.0, 43.0, 45.0])
    ms_only = curve("ms-only", ANCHOR_BPP, ms_ssim=ANCHOR_MS_SSIM)
    single = curve("single", [0.5], [33.0])
    table = bd_rate_table([cheaper, high, ms_only, single], [a, high])
    assert [[cell is None for cell in row] for row in table] == [
        [False, True],
        [True, False],
        [True, True],
        [True, True],
    ]
    assert isinstance(table[0][0], BDRate) and table[0][0].percent == pytest.approx(-10, abs=1e-9)
    assert table[1][1].percent == pytest.approx(0.0, abs=1e-12)

    text = format_bd_table([cheaper, high, ms_only, single], [a, high], table, "psnr")
    lines = text.strip().splitlines()
    assert lines[0] == "| curve | BD-rate (PSNR) vs anchor | BD-rate (PSNR) vs high |"
    assert lines[1] == "| --- | --- | --- |"
    assert lines[2] == "| cheaper\\|x | -10.0 % (27.0-40.1 dB) | n/a |"  # "|" in a name is escaped
    assert lines[3] == "| high | n/a | 0.0 % (41.0-45.0 dB) |"
    assert lines[4] == "| ms-only | n/a | n/a |"
    assert len(lines) == 6
    with pytest.raises(ValueError, match="table shape"):
        format_bd_table([cheaper], [a, high], table, "psnr")


# --- MS-SSIM ----------------------------------------------------------------------------------


def test_ms_ssim_uses_db_quality() -> None:
    # log10(bpp) linear in MS-SSIM dB; a +0.5 dB shift must give 10^(-b 0.5) - 1 only if the dB
    # conversion -10 log10(1 - MS-SSIM) is used (on the raw MS-SSIM scale the shift is not constant).
    b = 0.12
    q_db = np.array([9.0, 11.0, 13.5, 16.0, 19.0, 22.0])
    bpp = 10 ** (-2.5 + b * q_db)
    to_ms = lambda q: 1 - 10 ** (-q / 10)  # noqa: E731
    a = curve("A", bpp, ms_ssim=to_ms(q_db))
    t = curve("T", bpp, ms_ssim=to_ms(q_db + 0.5))
    result = bd_rate(a, t, "ms-ssim")
    assert result.percent == pytest.approx((10 ** (-b * 0.5) - 1) * 100, abs=1e-9)
    assert result.overlap == pytest.approx((9.5, 22.0), abs=1e-9)


def test_ms_ssim_of_one_cannot_be_expressed_in_db() -> None:
    perfect = curve("perfect", [0.5, 1.0], ms_ssim=[0.99, 1.0])
    with pytest.raises(ResultsError, match=r"'perfect'.*\[0, 1\)"):
        bd_rate(anchor(), perfect, "ms-ssim")


# --- published Kodak curves (../shared/rd_results) -------------------------------------------


def published(rel: str) -> RDCurve:
    return load_curve(RD_RESULTS / rel)


# Values of the README table in shared/rd_results (BD-rate vs compressai_kodak/vtm.json, PSNR).
README_VALUES = [
    ("evc_kodak/evc_kodak_EVC_LL.json", -1.0),
    ("evc_kodak/evc_kodak_EVC_MM.json", +1.0),
    ("evc_kodak/evc_kodak_EVC_SS.json", +7.1),
    ("compressai_kodak/webp.json", +78.7),
    ("compressai_kodak/hm.json", +23.3),
    ("other_kodak/mlicpp_kodak.json", -15.0),
]


@needs_shared
@pytest.mark.parametrize("rel, expected", README_VALUES)
def test_published_bd_rates_vs_vtm(rel: str, expected: float) -> None:
    vtm = published("compressai_kodak/vtm.json")
    result = bd_rate(vtm, published(rel))
    assert result.percent == pytest.approx(expected, abs=0.15)


@needs_shared
def test_evc_overlap_is_evcs_own_psnr_range() -> None:
    # EVC's 4 points (32.5-37.9 dB) lie inside VTM's 26.1-46.6 dB, so EVC's range is integrated over.
    evc = published("evc_kodak/evc_kodak_EVC_LL.json")
    result = bd_rate(published("compressai_kodak/vtm.json"), evc)
    assert result.overlap == (min(evc.psnr), max(evc.psnr))
    assert result.test == "EVC_LL" and result.anchor == "VTM"


@needs_shared
def test_published_ms_ssim_and_table() -> None:
    vtm = published("compressai_kodak/vtm.json")
    hm = published("compressai_kodak/hm.json")
    webp = published("compressai_kodak/webp.json")
    evc = published("evc_kodak/evc_kodak_EVC_LL.json")  # PSNR only
    table = bd_rate_table([evc, hm, webp], [vtm], "ms-ssim")
    assert table[0][0] is None
    # HM and WebP need more bits than VTM in MS-SSIM too, WebP far more.
    assert 10 < table[1][0].percent < 35
    assert table[2][0].percent > table[1][0].percent + 20
    lo, hi = table[1][0].overlap
    assert 8 < lo < hi < 30  # dB, not raw MS-SSIM
    psnr_table = bd_rate_table([evc], [vtm], "psnr")
    text = format_bd_table([evc], [vtm], psnr_table, "psnr")
    assert "| EVC_LL | -1.0 % (32.5-37.9 dB) |" in text


# --- plots ------------------------------------------------------------------------------------


def test_plot_writes_png_and_svg(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from evc.eval.plots import plot_rd

    ms_only = curve("ms-only", ANCHOR_BPP, ms_ssim=ANCHOR_MS_SSIM)
    ours = curve("ours", [b * 0.9 for b in ANCHOR_BPP], ANCHOR_PSNR)
    stem = tmp_path / "new" / "dir" / "rd"
    paths = plot_rd(
        [anchor(), ours, ms_only], stem, title="synthetic", styles={"ours": "ours", "anchor": "published"}
    )
    assert paths == [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    png, svg = paths
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
    svg_text = svg.read_text()
    assert "<svg" in svg_text and svg.stat().st_size > 10_000
    # the PSNR-less curve is skipped: its name is not in the legend, the others are
    assert "ours" in svg_text and "anchor" in svg_text and "ms-only" not in svg_text

    ms_paths = plot_rd([anchor(), ms_only, ours], tmp_path / "ms", metric="ms-ssim", bpp_max=None)
    assert all(p.stat().st_size > 10_000 for p in ms_paths)
    assert "ms-only" in ms_paths[1].read_text()

    # the same curves give the same SVG, byte for byte (no date, no random ids): docs diff cleanly
    again = plot_rd(
        [anchor(), ours, ms_only], tmp_path / "again", title="synthetic", styles={"ours": "ours", "anchor": "published"}
    )
    assert again[1].read_bytes() == svg.read_bytes()


def test_plot_errors(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from evc.eval.plots import plot_rd

    with pytest.raises(ResultsError, match="none of the 1 curves"):
        plot_rd([curve("ms-only", ANCHOR_BPP, ms_ssim=ANCHOR_MS_SSIM)], tmp_path / "x")
    with pytest.raises(ValueError, match="'bold'"):
        plot_rd([anchor()], tmp_path / "x", styles={"anchor": "bold"})
    assert not list(tmp_path.iterdir())  # nothing written on error


@needs_shared
def test_plot_published_curves_does_not_touch_pyplot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import sys

    from evc.eval.plots import plot_rd

    had_pyplot = "matplotlib.pyplot" in sys.modules
    curves = [published("evc_kodak/evc_kodak_EVC_LL.json"), published("compressai_kodak/vtm.json")]
    paths = plot_rd(curves, tmp_path / "kodak", styles={"EVC_LL": "ours"})
    assert all(p.is_file() for p in paths)
    if not had_pyplot:
        assert "matplotlib.pyplot" not in sys.modules



def test_plot_styles_tell_roles_apart(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import re

    from evc.eval.plots import plot_rd

    one = curve("c", ANCHOR_BPP, ANCHOR_PSNR)
    dashes = {}
    for role in ("ours", "published", "baseline"):
        svg = plot_rd([one], tmp_path / role, styles={"c": role})[1].read_text()
        dashes[role] = set(re.findall(r"stroke-dasharray: ([0-9.,\s]+)", svg))
    assert dashes["ours"] == set()  # solid (grid lines are solid too)
    assert dashes["published"] and dashes["baseline"] and dashes["published"] != dashes["baseline"]


def test_bd_quality_of_a_shifted_curve_is_the_shift() -> None:
    """Every PSNR raised by 0.7 dB at the same rates: BD-PSNR is 0.7 dB over the whole rate range."""
    anchor = curve("a", ANCHOR_BPP, ANCHOR_PSNR)
    test = curve("t", ANCHOR_BPP, [p + 0.7 for p in ANCHOR_PSNR])
    result = bd_quality(anchor, test)
    assert result.db == pytest.approx(0.7, abs=1e-12)
    assert result.overlap == pytest.approx((ANCHOR_BPP[0], ANCHOR_BPP[-1]))
    assert bd_quality(test, anchor).db == pytest.approx(-0.7, abs=1e-12)


def test_bd_quality_on_log_linear_curves_without_a_common_quality() -> None:
    """PSNR = 30 + 10 log10(bpp) against 26 + 10 log10(bpp / 2) on interleaved rates: the lines differ
    by 4 + 10 log10(2) dB, although their PSNR ranges do not overlap (no BD-rate there)."""
    a_bpp, t_bpp = [0.2, 0.3, 0.45, 0.7], [0.25, 0.4, 0.6, 0.9]
    anchor = curve("a", a_bpp, [30 + 10 * np.log10(b) for b in a_bpp])
    test = curve("t", t_bpp, [26 + 10 * np.log10(b / 2) for b in t_bpp])
    with pytest.raises(ResultsError, match="do not overlap"):
        bd_rate(anchor, test)
    result = bd_quality(anchor, test)
    assert result.db == pytest.approx(-(4 + 10 * np.log10(2)), abs=1e-9)
    assert result.overlap == pytest.approx((0.25, 0.7))


def test_bd_quality_needs_overlapping_rates() -> None:
    with pytest.raises(ResultsError, match="rate ranges do not overlap"):
        bd_quality(curve("a", [0.1, 0.2], [28.0, 30.0]), curve("t", [0.3, 0.5], [31.0, 32.0]))

"""benchmarks.layout: both activation layouts compute the reference convolution before anything is timed,
and the README's benchmarks table carries its comparison only when its results file exists."""
import numpy as np
import pytest

from benchmarks import layout, report


def test_table2_convolutions_are_all_listed_in_order():
    names = [spec[0] for spec in layout.convolutions()]
    assert names == ["align.conv1", "align.conv2", "align.conv3", "align.conv4", "align.conv5", "nin1.conv",
                     "nin1.mlp", "nin2.conv", "nin2.mlp", "nin3.conv", "nin3.mlp", "nin4.conv", "nin4.mlp",
                     "nin5.conv", "nin5.mlp", "conv6"]
    assert layout.convolutions()[5][1:] == ((3, 112, 112), 32, 5, 2, 2)


@pytest.mark.parametrize("shape, F, K, stride, pad", [
    ((3, 11, 9), 4, 5, 2, 2),          # strided, fields over every edge, a non-square input
    ((5, 7, 7), 6, 3, 1, 1),           # Table 2's 7x7 layers in miniature
    ((8, 6, 5), 3, 1, 1, 0),           # a 1x1 convolution: no copy in either layout
])
def test_both_layouts_compute_the_reference_convolution(shape, F, K, stride, pad):
    rng = np.random.default_rng(1)
    fns, macs = layout.layer_case(shape, F, K, stride, pad, rng)   # checks both against the reference first
    C, H, W = shape
    Ho, Wo = (H + 2 * pad - K) // stride + 1, (W + 2 * pad - K) // stride + 1
    assert macs == F * C * K * K * Ho * Wo
    assert sorted(fns) == ["channel-major", "pixel-major"]
    for fn in fns.values():                                        # the timed calls run without error
        fn()


def test_a_wrong_layout_is_caught_before_timing(monkeypatch):
    def off_by_one_pixel(x_hwc, w_hwc, K, stride, pad, patches, out):
        out[...] = 0.0
        out[1:] = (x_hwc.reshape(-1, x_hwc.shape[2]) @ w_hwc.T)[:-1]     # every pixel's output one place late
    monkeypatch.setattr(layout, "pixel_major", off_by_one_pixel)
    with pytest.raises(AssertionError):
        layout.layer_case((4, 5, 5), 3, 1, 1, 0, np.random.default_rng(2))


def test_report_row_only_with_the_results_file():
    assert report._layout_rows(None) == []
    row, = report._layout_rows(dict(channel_major_ms=1.2345, pixel_major_ms=1.5, pixel_over_channel=1.215,
                                    date="2026-12-04"))
    assert "1.23 → 1.50 ms (1.22×)" in row and "`layout.json` (2026-12-04)" in row

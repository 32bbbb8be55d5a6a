"""The diversity layer's Gaussian filter against scipy.ndimage's, on every path it takes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from prom3e_geo.layers import diversity
from prom3e_geo.layers.diversity import gaussian_filter


@pytest.mark.parametrize(
    ("shape", "sigma"),
    [
        ((40, 70), 2.0),  # shifted sums (17 taps)
        ((1, 9), 0.3),  # a one-row grid, a 3-tap kernel
        ((60, 45), 7.3),  # 59 taps: by FFT
        ((30, 20), 25.0),  # a kernel much wider than the grid
    ],
)
def test_equals_scipy_with_zeros_beyond_the_edges(shape, sigma):
    rng = np.random.default_rng(3)
    values = rng.random(shape) * (rng.random(shape) < 0.3)
    expected = ndimage.gaussian_filter(values, sigma, mode="constant", cval=0.0)
    np.testing.assert_allclose(gaussian_filter(values, sigma), expected, rtol=0, atol=1e-12)


def test_large_grids_go_to_scipy(monkeypatch):
    monkeypatch.setattr(diversity, "_SCIPY_CELLS", 100)
    values = np.random.default_rng(4).random((20, 30))
    expected = ndimage.gaussian_filter(values, 2.0, mode="constant", cval=0.0)
    assert np.array_equal(gaussian_filter(values, 2.0), expected)


def test_a_small_run_does_not_import_scipy_ndimage():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from prom3e_geo.layers.diversity import gaussian_filter\n"
        "gaussian_filter(np.ones((50, 50)), 2.0)\n"
        "print('scipy.ndimage' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

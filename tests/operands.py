"""Random int8 GEMM operands shared by the tests of the GEMM paths (``test_gemm``,
``test_cluster``, ``test_backend``)."""

import numpy as np

__all__ = ["rand_int8"]


def rand_int8(rng: np.random.Generator, shape, density: float = 1.0, lo: int = -128) -> np.ndarray:
    """Uniform int8 in ``[lo, 127]`` with each element kept with probability ``density``
    (the others zero), drawn from ``rng`` in a fixed order so that seeds stay reproducible."""
    a = rng.integers(lo, 128, shape).astype(np.int8)
    if density < 1:
        a[rng.random(shape) >= density] = 0
    return a

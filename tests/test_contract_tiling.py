"""hw.contract.tiling: every block fits the buffers and the blocks cover the GEMM once."""

import numpy as np

from hw.contract.blob import blob_len
from hw.contract.tiling import limits, plan_for


def test_blocks_fit_and_cover():
    lim = limits(rows=4, cols=2, d_depth=64, s_depth=32, c_depth=16)
    rng = np.random.default_rng(0)
    s = (rng.random((100, 40)) < 0.3).astype(np.int8)
    cover = np.zeros((23, 100, 40), dtype=np.int8)
    for mb, kb, nb in plan_for(23, s, lim):
        mt = -(-(mb.stop - mb.start) // 4)
        assert mt * (kb.stop - kb.start) <= 64 and mt * (nb.stop - nb.start) <= 16
        assert blob_len(nb.stop - nb.start, int(s[kb, nb].sum())) <= 32
        cover[mb, kb, nb] += 1
    assert (cover == 1).all()


def test_k_blocks_leave_room_for_one_dense_column():
    lim = limits(rows=8, cols=8, d_depth=4096, s_depth=64, c_depth=64)
    s = np.ones((2 * 59, 1), dtype=np.int8)  # two equal K blocks of the largest size
    blocks = plan_for(8, s, lim)
    assert max(kb.stop - kb.start for _, kb, _ in blocks) == 64 - 5  # 4 + N + nnz <= s_depth

"""Pipeline p2p overlap (Megatron-Core ``overlap_p2p_comm``): only the interleaved schedule hides
sends, never makes a step slower, and leaves fill and flush exposed."""

import numpy as np
import pytest

from roofplan.costmodel.train import TrainConfigs, train_step
from roofplan.hardware.catalog import load_hardware
from roofplan.models.loader import load_model

MODEL = load_model("llama-3.1-70b")
HW = load_hardware("h100-sxm")


def _step(overlap: bool, vpp: int, gbs: int = 512):
    cfg = TrainConfigs.single(
        tp=4,
        pp=8,
        dp=2,
        vpp=vpp,
        micro_batch=1,
        global_batch=gbs,
        seq_len=4096,
        sequence_parallel=True,
        zero=1,
        overlap_p2p_comm=overlap,
    )
    return train_step(MODEL, HW, cfg)


@pytest.mark.parametrize("vpp", [1, 2, 5])
def test_overlap_never_slower(vpp):
    assert float(_step(True, vpp).step_time_s[0]) <= float(_step(False, vpp).step_time_s[0])


def test_plain_1f1b_is_unaffected():
    on, off = _step(True, 1), _step(False, 1)
    assert float(on.t_pp_comm[0]) == float(off.t_pp_comm[0]) > 0


def test_interleaved_exposes_only_fill_and_flush():
    # p=8, v=2, m=256 microbatches: warm-up 2(p-1)+(v-1)p = 22 chunk passes of v*m = 512
    on, off = _step(True, 2), _step(False, 2)
    assert float(on.t_pp_comm[0]) == pytest.approx(float(off.t_pp_comm[0]) * 22 / 512)
    # with few microbatches nothing is steady: everything stays exposed
    on, off = _step(True, 2, gbs=16), _step(False, 2, gbs=16)
    assert np.isclose(float(on.t_pp_comm[0]), float(off.t_pp_comm[0]))

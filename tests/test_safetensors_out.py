"""dossr_core.safetensors_out: the streamed writer gives the file safetensors itself reads back,
for every tensor shape a release holds (0-dim scalars such as SD 2.1's ``logit_scale`` and
empty tensors included)."""

import torch
from safetensors.torch import load_file

from dossr_core.safetensors_out import write_safetensors


def test_every_shape_round_trips_with_floats_cast_and_others_kept(tmp_path):
    tensors = {
        "cond_stage_model.model.logit_scale": torch.tensor(4.6052),          # 0-dim
        "control_model.weight": torch.randn(3, 2, 2),
        "control_model.transposed": torch.randn(4, 3).t(),                  # not contiguous
        "empty": torch.zeros(0, 5),
        "steps": torch.tensor(7, dtype=torch.int64),                         # 0-dim, not a float
    }
    want = {k: v.clone() for k, v in tensors.items()}
    path = tmp_path / "out.safetensors"
    write_safetensors(str(path), tensors, torch.float16, {"format": "pt"})
    assert tensors == {}                                   # popped as written
    got = load_file(str(path))
    assert set(got) == set(want)
    for name, value in want.items():
        assert got[name].shape == value.shape, name
        expected = value.half() if value.is_floating_point() else value
        assert got[name].dtype == expected.dtype, name
        assert torch.equal(got[name], expected), name

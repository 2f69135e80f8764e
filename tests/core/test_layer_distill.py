import copy

import pytest
import torch
from torch import nn

from weightless_core.errors import InvalidInputError
from weightless_core.method.layer_distill import matchable, matched, module_of


def _mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2))


def test_layer_match_is_the_relative_squared_error_of_each_layer_and_its_hooks_go():
    teacher = _mlp(0).eval()
    student = copy.deepcopy(teacher)
    x = torch.rand(5, 1, 2, 4)
    names = ["1.weight", "1.bias", "3.weight"]
    assert [module_of(n) for n in names] == ["1", "1", "3"]
    with matched(student, teacher, names) as match:
        student(x)
        assert float(match.loss(x).detach()) == pytest.approx(0.0, abs=1e-12)
        with torch.no_grad():
            student[3].bias += 1.0
        student(x)
        got = float(match.loss(x).detach())
    t1, t3 = teacher[1](teacher[0](x)), teacher(x)
    want = (0.0 + float(1.0 / t3.pow(2).mean())) / 2  # layer 1 unchanged, layer 3 off by 1
    assert got == pytest.approx(want, rel=1e-5)
    assert t1.shape == (5, 6)
    assert not student[1]._forward_hooks and not teacher[3]._forward_hooks  # removed
    with matched(student, None, names) as none:
        assert none is None


def test_only_layers_that_report_a_tensor_are_matched_and_none_is_refused():
    x = torch.rand(2, 1, 2, 4)
    assert matchable(_mlp(0), ["1.weight", "3.weight"], x) == ["1.weight", "3.weight"]
    with pytest.raises(InvalidInputError, match="TorchScript"):
        matchable(torch.jit.script(_mlp(0)), ["1.weight"], x)
    with pytest.raises(InvalidInputError, match="no compressed tensor's module"):
        matchable(nn.Linear(3, 2), ["weight"], torch.rand(2, 3))  # the model itself

    class Recurrent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(4, 3, batch_first=True)
            self.head = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.gru(x)[0][:, -1])

    model = Recurrent()
    assert matchable(model, ["gru.weight_ih_l0", "head.weight"], torch.rand(2, 5, 4)) == [
        "head.weight"
    ]  # the GRU returns a tuple
    assert not model.gru._forward_hooks and not model.head._forward_hooks

import pytest
import torch

from weightless_core.errors import InvalidInputError
from weightless_core.method.prune import magnitude_mask, schedule


def test_schedule_is_cubic_ramp_ending_at_target():
    steps = schedule(0.9, 3)
    assert steps[-1] == pytest.approx(0.9)
    assert steps == sorted(steps)
    assert steps[0] == pytest.approx(0.9 * (1 - (2 / 3) ** 3))


def test_schedule_rejects_zero_steps():
    with pytest.raises(InvalidInputError, match="steps"):
        schedule(0.5, 0)


def test_mask_keeps_largest_magnitudes_hand_checked():
    w = torch.tensor([[0.1, -3.0, 0.2], [2.0, -0.05, 1.0]])
    mask = magnitude_mask(w, 0.5)
    assert mask.tolist() == [[False, True, False], [True, False, True]]


def test_mask_ties_are_broken_by_position():
    w = torch.ones(6)
    assert magnitude_mask(w, 0.5).tolist() == [True, True, True, False, False, False]


def test_mask_never_grows_back():
    w = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])
    first = magnitude_mask(w, 0.4)  # keeps 5, 4, 3
    w2 = torch.tensor([0.0, 4.0, 3.0, 9.0, 1.0])  # a pruned weight grew large
    second = magnitude_mask(w2, 0.6, keep=first)
    assert second.tolist() == [False, True, True, False, False]


def test_mask_keeps_at_least_one_weight():
    assert int(magnitude_mask(torch.randn(10), 0.99).sum()) == 1


def test_mask_rejects_bad_sparsity():
    with pytest.raises(InvalidInputError, match="sparsity"):
        magnitude_mask(torch.randn(4), 1.0)


def test_unit_grid_keeps_the_rows_and_columns_of_largest_norm():
    import torch

    from weightless_core.method.prune import unit_grid

    w = torch.zeros(4, 2, 3)  # matrix view 4 x 6
    m = w.view(4, 6)
    m[0] = 0.1
    m[2] = 1.0
    m[3] = 0.5
    m[:, 5] += 2.0
    m[:, 1] += 1.0
    grid = unit_grid(w, 0.5).view(4, 6)
    rows = grid.any(dim=1).tolist()
    cols = grid.any(dim=0).tolist()
    assert rows == [False, False, True, True]  # squared norms 5.66, 5, 17, 9.5
    # squared norms 1.26, 8.46, 1.26, 1.26, 1.26, 23.66: columns 5 and 1, then the first tie
    assert cols == [True, True, False, False, False, True]
    assert torch.equal(grid, torch.tensor(rows)[:, None] & torch.tensor(cols)[None, :])
    assert unit_grid(w, 0.0).all()
    # each axis its own share: all rows, a third of the columns; half the rows, every column
    only_cols = unit_grid(w, 0.0, 4 / 6).view(4, 6)
    assert only_cols.all(dim=0).tolist() == [False, True, False, False, False, True]
    assert only_cols.any(dim=1).all()
    only_rows = unit_grid(w, 0.5, 0.0).view(4, 6)
    assert only_rows.any(dim=1).tolist() == rows and only_rows.any(dim=0).all()
    assert torch.equal(unit_grid(w, 0.5, None).view(4, 6), grid)  # None: the rows' share


def test_unit_grid_refuses_a_share_out_of_range_naming_it():
    import torch

    from weightless_core.method.prune import unit_grid

    with pytest.raises(InvalidInputError, match=r"column_sparsity must be in \[0, 1\), got 1.0"):
        unit_grid(torch.ones(3, 3), 0.5, 1.0)
    with pytest.raises(InvalidInputError, match="unit_sparsity must be in"):
        unit_grid(torch.ones(3, 3), -0.1)

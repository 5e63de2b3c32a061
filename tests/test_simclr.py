import math

import pytest
import torch

from ssnas.objectives.simclr import SimCLR, nt_xent
from ssnas.training.objective import Batch, ObjectiveConfig


def nt_xent_by_hand(z1, z2, t):
    """SimCLR Eq. 1 transcribed literally: a loop over the 2N views with cosine similarities."""
    views = [list(map(float, v)) for v in list(z1) + list(z2)]
    n = len(z1)
    cos = lambda a, b: sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
    total = 0.0
    for k in range(2 * n):
        p = (k + n) % (2 * n)
        denominator = sum(math.exp(cos(views[k], views[m]) / t) for m in range(2 * n) if m != k)
        total += -math.log(math.exp(cos(views[k], views[p]) / t) / denominator)
    return total / (2 * n)


def test_identical_orthogonal_views_give_the_closed_form():
    z = torch.eye(2)
    # each view: positive at cos 1, two negatives at cos 0 -> loss = log(1 + 2 exp(-1/t)), t = 0.5
    assert nt_xent(z, z, 0.5).item() == pytest.approx(math.log(1 + 2 * math.exp(-2)), rel=1e-6)


def test_matches_the_paper_formula_on_a_hand_case():
    z1 = torch.tensor([[1.0, 0.0, 2.0], [0.5, -1.0, 0.0], [0.0, 1.0, 1.0]])
    z2 = torch.tensor([[0.9, 0.1, 1.5], [1.0, -1.0, 0.5], [-0.5, 1.0, 0.0]])
    for t in (0.1, 0.5, 1.0):
        assert nt_xent(z1, z2, t).item() == pytest.approx(nt_xent_by_hand(z1, z2, t), rel=1e-5)


def test_permuted_positives_raise_the_loss():
    torch.manual_seed(0)
    z = torch.randn(8, 16)
    aligned = nt_xent(z, z + 0.01 * torch.randn_like(z), 0.5)
    shuffled = nt_xent(z, z[torch.roll(torch.arange(8), 1)], 0.5)
    assert aligned < shuffled


def test_scale_invariance_from_cosine_similarity():
    torch.manual_seed(1)
    z1, z2 = torch.randn(4, 8), torch.randn(4, 8)
    assert nt_xent(z1, z2, 0.2).item() == pytest.approx(nt_xent(3 * z1, 0.5 * z2, 0.2).item(), rel=1e-5)


def test_objective_returns_loss_and_logs_its_part():
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 6))
    objective = SimCLR(ObjectiveConfig(proj_dim=4), feature_dim=6)
    views = [torch.randn(5, 3, 2, 2), torch.randn(5, 3, 2, 2)]
    out = objective(encoder, Batch(views=views, index=torch.arange(5)))
    assert set(out) == {"loss", "nt_xent"} and out["loss"].requires_grad
    out["loss"].backward()
    assert encoder[1].weight.grad is not None

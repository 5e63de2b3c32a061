"""Each objective's loss on hand-computed cases, plus the EMA update, the BYOL schedule and the key queue."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ssnas.objectives.byol import byol_loss
from ssnas.objectives.clsa import ddm_loss, info_nce
from ssnas.objectives.imix import draw_mix, imix_loss
from ssnas.objectives.suncet import suncet_loss
from ssnas.training.momentum import KeyQueue, byol_tau, ema_update_, momentum_copy

LN = math.log


# ---------------------------------------------------------------------------------------------- CLSA


def test_ddm_on_a_hand_computed_case():
    # row 0: p_weak = softmax(ln2, 0, 0) = (1/2, 1/4, 1/4); strong uniform -> -sum p log(1/3) = ln 3
    # row 1: strong = weak -> the entropy of (1/2, 1/4, 1/4) = 1.5 ln 2
    weak = torch.tensor([[LN(2), 0.0, 0.0], [LN(2), 0.0, 0.0]], requires_grad=True)
    strong = torch.tensor([[0.0, 0.0, 0.0], [LN(2), 0.0, 0.0]], requires_grad=True)
    loss = ddm_loss(weak, strong)
    assert loss.item() == pytest.approx((LN(3) + 1.5 * LN(2)) / 2, rel=1e-6)
    loss.backward()
    assert weak.grad is None or torch.all(weak.grad == 0)  # the weak distribution is the target: no gradient
    assert strong.grad is not None and strong.grad.abs().sum() > 0


def test_ddm_is_smallest_when_the_strong_query_matches_the_weak_one():
    torch.manual_seed(0)
    weak = torch.randn(6, 10)
    best = ddm_loss(weak, weak)
    entropy = -(weak.softmax(1) * weak.log_softmax(1)).sum(1).mean()
    assert best.item() == pytest.approx(entropy.item(), rel=1e-5)  # cross-entropy = entropy + KL, KL = 0
    for _ in range(5):
        assert ddm_loss(weak, weak + 0.5 * torch.randn_like(weak)) > best


def test_info_nce_closed_form_and_permuted_positives():
    t = 0.2
    q = torch.eye(3)[:2]  # two queries
    bank = torch.eye(3)  # their keys (rows 0, 1) and one queued key (row 2), all orthogonal
    # each query: positive at cos 1, two negatives at cos 0 -> log(1 + 2 exp(-1/t))
    assert info_nce(q @ bank.t() / t).item() == pytest.approx(LN(1 + 2 * math.exp(-1 / t)), rel=1e-6)
    torch.manual_seed(1)
    z = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    queue = torch.nn.functional.normalize(torch.randn(32, 16), dim=1)
    aligned = info_nce(z @ torch.cat([z, queue]).t() / t)
    shuffled = info_nce(z @ torch.cat([z.roll(1, 0), queue]).t() / t)
    assert aligned < shuffled


# ---------------------------------------------------------------------------------------------- BYOL


def test_byol_loss_known_values():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert byol_loss(a, 3 * a).item() == pytest.approx(0.0, abs=1e-7)  # identical directions: the minimum
    assert byol_loss(a, -a).item() == pytest.approx(4.0)  # opposite: the maximum
    assert byol_loss(a, a.flip(1)).item() == pytest.approx(2.0)  # orthogonal
    p = torch.tensor([[1.0, 1.0]], requires_grad=True)
    z = torch.tensor([[1.0, 0.0]], requires_grad=True)
    loss = byol_loss(p, z)
    assert loss.item() == pytest.approx(2 - 2 / math.sqrt(2), rel=1e-6)
    loss.backward()
    assert z.grad is None  # the target is a stop-gradient


def test_byol_tau_schedule():
    assert byol_tau(0.0, 0.996) == pytest.approx(0.996)
    assert byol_tau(1.0, 0.996) == pytest.approx(1.0)
    assert byol_tau(0.5, 0.996) == pytest.approx(1 - 0.004 / 2)  # cos(pi/2) = 0
    assert byol_tau(0.25, 0.99) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)
    values = [byol_tau(k / 10, 0.99) for k in range(11)]
    assert values == sorted(values)  # tau rises monotonically to 1


# ---------------------------------------------------------------------------------------------- EMA, queue


def test_ema_update_on_a_hand_case():
    online = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    target = momentum_copy(online)
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in online.parameters())
    with torch.no_grad():
        for p in target.parameters():
            p.fill_(1.0)
        for p in online.parameters():
            p.fill_(3.0)
        target[1].running_mean.fill_(1.0)
        online[1].running_mean.fill_(5.0)
        online[1].num_batches_tracked.fill_(7)
    ema_update_(target, online, tau=0.75)
    for p in target.parameters():  # 0.75 * 1 + 0.25 * 3
        assert torch.allclose(p, torch.full_like(p, 1.5))
    assert target[1].running_mean.item() == pytest.approx(0.75 * 1 + 0.25 * 5)
    assert target[1].num_batches_tracked.item() == 7  # integer buffers are copied
    ema_update_(target, online, tau=1.0)  # tau = 1 freezes the target
    assert target[0].weight[0, 0].item() == pytest.approx(1.5)
    ema_update_(target, online, tau=0.0)  # tau = 0 copies the online network
    assert target[0].weight[0, 0].item() == pytest.approx(3.0)


def test_queue_is_fifo_and_wraps():
    queue = KeyQueue(size=4, dim=2)
    assert torch.allclose(queue.keys.norm(dim=1), torch.ones(4))  # starts as random unit keys
    keys = torch.arange(1, 13, dtype=torch.float32).view(6, 2)  # six distinct keys k0..k5
    queue.push(keys[:3])
    assert torch.equal(queue.keys[:3], keys[:3]) and queue.ptr.item() == 3
    queue.push(keys[3:5])  # k3 into slot 3, k4 wraps to slot 0 replacing the oldest, k0
    assert torch.equal(queue.keys, torch.stack([keys[4], keys[1], keys[2], keys[3]])) and queue.ptr.item() == 1
    queue.push(torch.arange(100, 112, dtype=torch.float32).view(6, 2))  # more than fits: the newest 4 survive
    assert sorted(queue.keys[:, 0].tolist()) == [104.0, 106.0, 108.0, 110.0]
    assert set(queue.state_dict()) == {"keys", "ptr"}  # both checkpointed


# ---------------------------------------------------------------------------------------------- SuNCEt


def test_suncet_on_hand_computed_cases():
    # two classes, two identical embeddings each (t = 1): every anchor has one positive at cos 1 and two
    # negatives at cos 0 -> log(1 + 2/e)
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert suncet_loss(z, torch.tensor([0, 0, 1, 1]), 1.0).item() == pytest.approx(LN(1 + 2 / math.e), rel=1e-6)
    # three embeddings, t = 0.5; anchor 2 is alone in its class and is left out of the mean
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], requires_grad=True)
    l0 = -LN(math.exp(1.2) / (math.exp(1.2) + math.exp(0.0)))
    l1 = -LN(math.exp(1.2) / (math.exp(1.2) + math.exp(1.6)))
    loss = suncet_loss(z, torch.tensor([0, 0, 1]), 0.5)
    assert loss.item() == pytest.approx((l0 + l1) / 2, rel=1e-6)
    loss.backward()
    assert torch.isfinite(z.grad).all()


def test_suncet_without_labelled_pairs_is_zero_and_separating_classes_lowers_it():
    assert suncet_loss(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 0.5).item() == 0.0
    assert suncet_loss(torch.randn(3, 4), torch.tensor([0, 1, 2]), 0.5).item() == 0.0  # no positives at all
    labels = torch.tensor([0, 0, 1, 1])
    separated = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    mixed = separated[[0, 2, 1, 3]]
    assert suncet_loss(separated, labels, 0.5) < suncet_loss(mixed, labels, 0.5)


# ---------------------------------------------------------------------------------------------- i-Mix


def test_imix_loss_on_a_hand_computed_case():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    partner = torch.tensor([1, 0])
    # lam = 1 is the plain N-pair loss: each row log(1 + e^-2)
    assert imix_loss(logits, partner, torch.ones(2)).item() == pytest.approx(LN(1 + math.exp(-2)), rel=1e-6)
    # row 0 unmixed: log(1 + e^-2); row 1 half-mixed: 0.5 log(1 + e^-2) + 0.5 (2 + log(1 + e^-2))
    got = imix_loss(logits, partner, torch.tensor([1.0, 0.5])).item()
    assert got == pytest.approx((2 * LN(1 + math.exp(-2)) + 1) / 2, rel=1e-6)


def test_imix_mixed_labels_prefer_the_mixed_partner():
    """When anchor i really is a half-half mix of i and pi(i), logits that split between the two score better
    than logits that put everything on i."""
    partner, lam = torch.tensor([1, 0]), torch.tensor([0.5, 0.5])
    split = torch.tensor([[3.0, 3.0], [3.0, 3.0]])
    one_sided = torch.tensor([[3.0, -3.0], [-3.0, 3.0]])
    assert imix_loss(split, partner, lam) < imix_loss(one_sided, partner, lam)


def test_draw_mix_is_deterministic_and_in_range():
    p1, l1 = draw_mix(512, 1.0, seed=5)
    p2, l2 = draw_mix(512, 1.0, seed=5)
    assert torch.equal(p1, p2) and torch.equal(l1, l2)
    assert sorted(p1.tolist()) == list(range(512))
    assert l1.min() >= 0.5 and l1.max() <= 1.0
    assert abs(l1.mean().item() - 0.75) < 0.03  # Beta(1, 1) = U(0, 1), so max(b, 1 - b) ~ U(0.5, 1)
    assert not torch.equal(draw_mix(512, 1.0, seed=6)[1], l1)

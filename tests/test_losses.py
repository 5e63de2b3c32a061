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


# ---------------------------------------------------------------------------------------------- ConRec, multi-task


def test_pixel_mse_in_pixel_units_and_on_a_mask():
    from ssnas.training.heads import pixel_mse

    target = torch.zeros(1, 2, 1, 2)
    pred = torch.tensor([[[[1.0, 2.0]], [[0.0, 4.0]]]])  # normalised units; channel stds 0.5 and 0.25
    std = torch.tensor([0.5, 0.25]).view(1, 2, 1, 1)
    # pixel errors: 0.5, 1.0 (channel 0), 0, 1.0 (channel 1) -> squares 0.25, 1, 0, 1 -> mean 2.25 / 4
    assert pixel_mse(pred, target, std).item() == pytest.approx(2.25 / 4)
    assert pixel_mse(pred, target).item() == pytest.approx((1 + 4 + 0 + 16) / 4)  # no std: already pixels
    mask = torch.tensor([[[[True, False]]]])  # first column only, both channels: 0.25 and 0
    assert pixel_mse(pred, target, std, mask).item() == pytest.approx(0.25 / 2)


@pytest.mark.parametrize("norm,weights", [("sigmoid", (0.4, 0.6)), ("softmax", (0.25, 0.75))])
def test_attention_pooling_weights_sum_to_one_and_pool_by_hand(norm, weights):
    from ssnas.training.heads import attention_pool

    # two positions with features (1, 2) and (3, -2); scores 0 and ln 3:
    # sigmoid: 0.5 and 0.75 -> 0.4, 0.6 (ConRec's GAP(m f) / GAP(m)); softmax: 1/4, 3/4
    maps = torch.tensor([[1.0, 3.0], [2.0, -2.0]]).view(1, 2, 1, 2)
    scores = torch.tensor([0.0, LN(3)]).view(1, 1, 1, 2)
    pooled, w = attention_pool(maps, scores, norm)
    assert w.sum().item() == pytest.approx(1.0) and w.flatten().tolist() == pytest.approx(list(weights))
    a, b = weights
    assert pooled.flatten().tolist() == pytest.approx([a * 1 + b * 3, a * 2 + b * -2])
    torch.manual_seed(0)
    pooled, w = attention_pool(torch.randn(3, 5, 4, 4), torch.randn(3, 1, 4, 4), norm)
    assert torch.allclose(w.sum(1), torch.ones(3)) and (w > 0).all() and pooled.shape == (3, 5)


def test_attention_pool_module_with_equal_scores_is_the_global_average():
    from ssnas.training.heads import AttentionPool

    pool = AttentionPool(8, dropout=0.0).eval()
    with torch.no_grad():
        pool.scorer[-1].weight.zero_()  # every position scores the bias alone: equal weights
    maps = torch.randn(2, 8, 3, 5)
    torch.testing.assert_close(pool(maps), maps.mean((2, 3)))


def test_decoder_reaches_the_exact_view_size_from_any_map():
    from ssnas.training.heads import MapDecoder, decoder_sizes

    assert decoder_sizes((8, 8), (32, 32), 2) == [(16, 16), (32, 32)]
    assert decoder_sizes((1, 1), (8, 8), 3) == [(2, 2), (4, 4), (8, 8)]
    decoder = MapDecoder(16, 3, blocks=3)
    for hw in ((1, 1), (2, 2), (4, 4), (7, 7), (8, 8), (40, 40)):
        for size in ((32, 32), (28, 28), (16, 16)):
            assert decoder(torch.randn(2, 16, *hw), size).shape == (2, 3, *size)


def test_jigsaw_tiles_follow_a_known_permutation():
    from ssnas.objectives.multitask import jigsaw_permutations, jigsaw_tiles

    # a 4x4 image whose 2x2 tiles hold their raster index: tile t is filled with t
    tile_of = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]], dtype=torch.float32)
    x = tile_of.view(1, 1, 4, 4).repeat(2, 1, 1, 1)
    orders = jigsaw_permutations(4, 24)
    label = torch.tensor([0, 17])  # the identity, and order 17 of the lexicographic list
    assert orders[17].tolist() == [2, 3, 1, 0]
    tiles = jigsaw_tiles(x, 2, orders[label]).view(2, 4, 1, 2, 2)
    assert tiles[0, :, 0, 0, 0].tolist() == [0, 1, 2, 3]
    assert tiles[1, :, 0, 0, 0].tolist() == [2, 3, 1, 0]  # slot i holds tile orders[17][i]
    assert (tiles == tiles[..., :1, :1]).all()  # whole tiles moved, none cut


def test_jigsaw_permutation_sets():
    from ssnas.objectives.multitask import jigsaw_permutations

    every = jigsaw_permutations(4, 24)
    assert len({tuple(p) for p in every.tolist()}) == 24
    # greedy maximal minimum Hamming distance from the identity, lexicographic ties: a Latin square for 4 of 4!
    assert jigsaw_permutations(4, 4).tolist() == [[0, 1, 2, 3], [1, 0, 3, 2], [2, 3, 0, 1], [3, 2, 1, 0]]


@pytest.mark.slow  # enumerates all 9! orders
def test_jigsaw_permutations_of_a_3x3_grid_are_far_apart():
    from ssnas.objectives.multitask import jigsaw_permutations

    nine = jigsaw_permutations(9, 30)
    assert torch.equal(nine, jigsaw_permutations(9, 30))  # deterministic
    dist = (nine[:, None, :] != nine[None, :, :]).sum(-1) + 10 * torch.eye(30, dtype=torch.long)
    assert dist.min().item() >= 7  # 30 of 9! orders all differ in at least 7 of 9 slots


def test_patch_mask_masks_the_asked_share():
    from ssnas.objectives.multitask import patch_mask

    mask = patch_mask(3, (32, 32), 4, 0.3, torch.Generator().manual_seed(0))
    assert mask.shape == (3, 1, 32, 32)
    assert mask.float().mean((1, 2, 3)).tolist() == pytest.approx([5 / 16] * 3)  # round(0.3 * 16) = 5 of 16 patches
    cells = mask[:, 0, ::8, ::8]  # one pixel per 8x8 patch
    assert torch.equal(mask[:, 0], cells.repeat_interleave(8, 1).repeat_interleave(8, 2))


def test_conrec_corruptions():
    from ssnas.objectives.conrec import corrupt, in_painting, local_pixel_shuffling, out_painting_keep

    g = torch.Generator().manual_seed(3)
    x = torch.arange(3 * 32 * 32, dtype=torch.float32).view(3, 32, 32)
    ones = [local_pixel_shuffling(x, g, count=1, prob=1.0) for _ in range(10)]
    assert all(torch.equal(o.flatten().sort().values, x.flatten().sort().values) for o in ones)  # one block: moved
    assert any(not torch.equal(o, x) for o in ones)
    shuffled = local_pixel_shuffling(x, g)  # up to 15 blocks, each read from the original (they may overlap)
    assert set(shuffled.flatten().tolist()) <= set(x.flatten().tolist()) and not torch.equal(shuffled, x)
    assert torch.equal(shuffled[0] + 1024, shuffled[1])  # channels move together
    masks, active = in_painting(64, 32, 32, g)
    assert masks.shape == (64, 5, 32, 32) and active[:, 0].float().mean() > 0.8  # the first block with p = 0.95
    sides = masks.any(-1).sum(-1)[active]  # rows covered by each block: 14-20% of 32 -> 4 or 5
    assert set(sides.tolist()) <= {4, 5} and not masks[~active].any()
    keep = out_painting_keep(64, 32, 32, g)
    assert keep.float().mean(dim=(1, 2)).min() >= (20 / 32) ** 2 - 1e-6  # the first window (>= 20 px) always
    assert (~keep).any(dim=(1, 2)).all()  # and something is always painted over
    views = torch.randn(16, 3, 32, 32)
    a = corrupt(views, torch.Generator().manual_seed(1))
    b = corrupt(views, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, views)
    changed = (a != views).flatten(1).any(1)
    assert changed.float().mean() > 0.8  # almost every image is corrupted somewhere

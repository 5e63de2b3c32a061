"""ConRec and the multi-task objective beyond the contract tests: on every kind of encoder the spaces produce (their
decoder from any feature-map size), against SimCLR where they reduce to it, their option checks, and a real
retrain on Fashion-MNIST followed by the evaluation and export every objective gets."""
from __future__ import annotations

import json

import pytest
import torch

from ssnas import arch, registry
from ssnas.errors import UserError
from ssnas.nas.network import NetworkConfig, ResNet18Cifar
from ssnas.nas.space import SpaceConfig
from ssnas.training.objective import Batch, ObjectiveConfig
from ssnas.runs import checkpoint
from tests.conftest import requires_fashion

NEW = ("conrec", "multitask")


def _encoders():
    """(name, encoder) for every kind: both spaces' supernets and evaluation networks, and resnet18."""
    tiny = SpaceConfig(layers=3, init_channels=4, nodes=2)
    out = []
    for space in registry.available_spaces():
        supernet = arch.build_supernet(space, tiny, 3)
        out.append((f"{space}-supernet", supernet))
        out.append((f"{space}-network", arch.build_encoder(supernet.derive(), NetworkConfig(layers=3, init_channels=4), 3)))
    out.append(("resnet18", ResNet18Cifar(3)))
    return out


def _objective(name: str, feature_dim: int, **options):
    cfg = ObjectiveConfig(name=name, proj_dim=8, options=options)
    return registry.objective(name)(cfg, feature_dim)


def _batch(n: int = 4, size: int = 16) -> Batch:
    torch.manual_seed(0)
    views = [torch.randn(n, 3, size, size) for _ in range(2)]
    stats = (torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25))
    return Batch(views=views, index=torch.arange(n), pixel_stats=stats)


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW)
def test_runs_on_every_encoder_the_spaces_produce(name):
    batch = _batch()
    for kind, encoder in _encoders():
        objective = _objective(name, encoder.feature_dim)
        objective.attach(encoder)
        parts = objective(encoder, batch)
        assert torch.isfinite(parts["loss"]), kind
        parts["loss"].backward()
        decoder_grads = [p.grad for p in objective.decoder.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in decoder_grads), kind
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters()), kind
        z = objective.embed(encoder, batch.views[0])
        assert z.shape == (4, 8) and torch.allclose(z.norm(dim=1), torch.ones(4), atol=1e-5)


def test_conrec_without_its_additions_is_simclr():
    """No reconstruction, no corruption, global average pooling: exactly SimCLR's loss with the same head."""
    torch.manual_seed(0)
    encoder = arch.build_encoder("DARTS_V2", NetworkConfig(layers=3, init_channels=4), 3)
    conrec = _objective("conrec", encoder.feature_dim, reconstruction_weight=0.0, corruption=False, pooling="mean")
    simclr = _objective("simclr", encoder.feature_dim)
    simclr.head.load_state_dict(conrec.head.state_dict())
    conrec.attach(encoder)
    assert conrec.decoder is None and conrec.attention is None
    batch = _batch()
    torch.testing.assert_close(conrec(encoder, batch)["loss"], simclr(encoder, batch)["loss"])


def test_conrec_reconstructs_the_clean_view_from_the_corrupted_one():
    """The decoder's target is the uncorrupted view: a decoder that output the clean view would score 0."""
    from ssnas.objectives.conrec import corrupt
    from ssnas.training.heads import pixel_mse

    batch = _batch()
    clean = torch.cat(batch.views)
    assert pixel_mse(clean, clean, batch.pixel_stats[1]).item() == 0.0
    noisy = corrupt(clean, torch.Generator().manual_seed(0), batch.pixel_stats)
    assert pixel_mse(noisy, clean, batch.pixel_stats[1]).item() > 0.0


def test_multitask_terms_switch_off_with_their_weights():
    encoder = arch.build_encoder("DARTS_V2", NetworkConfig(layers=3, init_channels=4), 3)
    only_jigsaw = _objective("multitask", encoder.feature_dim, contrastive_weight=0.0, prediction_weight=0.0)
    only_jigsaw.attach(encoder)
    parts = only_jigsaw(encoder, _batch())
    assert only_jigsaw.decoder is None and set(parts) == {"loss", "jigsaw", "jigsaw_accuracy"}
    assert parts["loss"].item() == pytest.approx(parts["jigsaw"].item())


@pytest.mark.parametrize("name,options,needle", [
    ("conrec", {"pooling": "max"}, "pooling .* must be one of attention, mean"),
    ("conrec", {"reconstruction_weight": 0.0, "contrastive_weight": 0.0}, "must not both be 0"),
    ("conrec", {"attention_dropout": 1.0}, "attention_dropout"),
    ("multitask", {"jigsaw_grid": 4}, "jigsaw_grid .* must be one of 2, 3"),
    ("multitask", {"jigsaw_permutations": 25}, r"\[2, 24\]"),
    ("multitask", {"mask_ratio": 1.0}, "mask_ratio"),
])
def test_bad_options_are_refused_before_any_data(name, options, needle):
    with pytest.raises(UserError, match=needle):
        registry.objective(name).check(ObjectiveConfig(name=name, options=options))


def test_an_encoder_without_feature_maps_is_refused_by_name():
    encoder = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    with pytest.raises(UserError, match="Sequential has no forward_maps"):
        _objective("conrec", 4).attach(encoder)


@pytest.mark.slow
@requires_fashion
@pytest.mark.parametrize("name", NEW)
def test_retrain_then_eval_and_export(name, tmp_path, fashion_train):
    from ssnas.cli import main
    from ssnas.evaluate import EvalConfig, evaluate
    from ssnas.retrain import run_retrain
    from tests.test_retrain import tiny_retrain_config

    out = tmp_path / name
    result = run_retrain(tiny_retrain_config(out, **{"objective.name": name, "knn.every": 0}), fashion_train)
    assert result.finished
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["kind"] == "step"]
    expected = {"conrec": {"nt_xent", "reconstruction"}, "multitask": {"nt_xent", "prediction", "jigsaw"}}[name]
    assert all(expected <= set(r) and torch.isfinite(torch.tensor(r["loss"])) for r in steps)
    state = checkpoint.load(out / "checkpoint.pt")
    assert any(k.startswith("decoder.") for k in state["objective"])  # the decoder is trained and checkpointed
    cfg = EvalConfig(protocol="knn", progress=False, tensorboard=False)
    cfg.data.dataset = "fashion-mnist"
    record = evaluate(out, cfg, fashion_train, fashion_train)
    assert 0.0 <= record["accuracy"] <= 1.0
    assert main(["export", str(out), "--to", "onnx", "--out", str(tmp_path / "net.onnx")]) == 0

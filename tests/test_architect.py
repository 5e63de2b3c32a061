import torch

from ssnas.nas.architect import unrolled_arch_grads


def test_second_order_gradient_matches_exact_hypergradient():
    """The finite-difference Hessian-vector product (DARTS Eq. 8) against autograd's exact one."""
    torch.manual_seed(0)
    w = torch.randn(5, requires_grad=True)
    a = torch.randn(5, requires_grad=True)
    x_train, x_val = torch.randn(5), torch.randn(5)

    def train_loss(w, a):
        return ((w * a - x_train) ** 2).sum() + 0.1 * (w ** 3).sum() * a.sum()

    def val_loss(w, a):
        return ((w + a - x_val) ** 2).sum() + (w * a).sum() ** 2

    xi = 0.05
    opt = torch.optim.SGD([w], lr=xi, momentum=0.0, weight_decay=0.0)
    before = w.detach().clone()
    got = unrolled_arch_grads(lambda which: train_loss(w, a) if which == "train" else val_loss(w, a), [w], [a], opt)[0]

    # exact: d/da L_val(w - xi * dL_train/dw (w, a), a), differentiated through the virtual step
    w0 = before.clone().requires_grad_(True)
    g = torch.autograd.grad(train_loss(w0, a), w0, create_graph=True)[0]
    exact = torch.autograd.grad(val_loss(w0 - xi * g, a), a)[0]
    torch.testing.assert_close(got, exact, rtol=1e-3, atol=1e-3)
    assert torch.equal(w.detach(), before)  # weights restored exactly


def test_virtual_step_uses_momentum_and_weight_decay():
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    a = torch.tensor([0.5], requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9, weight_decay=0.01)
    opt.state[w]["momentum_buffer"] = torch.tensor([0.3, 0.3])
    # L_val depends on w only through w' = w - xi (0.9 buf + g + wd w); with L_train = a * sum(w), g = a
    seen = {}

    def loss(which):
        if which == "val":
            seen["w_prime"] = w.detach().clone()
            return (w * a).sum()
        return a.sum() * w.sum()

    unrolled_arch_grads(loss, [w], [a], opt)
    expected = torch.tensor([1.0, -2.0]) - 0.1 * (0.9 * 0.3 + 0.5 + 0.01 * torch.tensor([1.0, -2.0]))
    torch.testing.assert_close(seen["w_prime"], expected)

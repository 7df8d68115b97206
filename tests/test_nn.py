"""Modules: registration, flat buffers, modes, state, fusion, moving between backends."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import minitrain as mt
from minitrain import functional as F
from minitrain import nn
from minitrain.testing import gradcheck


def _mlp(backend, dtype="float32"):
    return nn.Sequential(
        nn.Linear(5, 7, dtype=dtype, backend=backend),
        nn.ReLU(),
        nn.Linear(7, 3, dtype=dtype, backend=backend),
    )


def test_parameters_are_registered_in_order(backend):
    net = _mlp(backend)
    names = [n for n, _ in net.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert [p.shape for p in net.parameters()] == [(7, 5), (7,), (3, 7), (3,)]
    assert net.num_parameters() == 7 * 5 + 7 + 3 * 7 + 3


def test_shared_parameter_is_listed_once(backend):
    lin = nn.Linear(4, 4, backend=backend)
    net = nn.Sequential(lin, nn.Tanh(), lin)
    assert len(net.parameters()) == 2


def test_parameters_are_views_of_one_flat_buffer(backend):
    net = _mlp(backend)
    (fb,) = net.flat_parameters()
    assert fb.size == net.num_parameters()
    fb.data[:] = 0.5
    assert all(float(p.numpy().mean()) == 0.5 for p in net.parameters())
    net.parameters()[0].data[0, 0] = 3.0
    assert float(backend.to_numpy(fb.data)[0]) == 3.0


def test_flattening_keeps_values_and_is_idempotent(backend):
    net = _mlp(backend)
    before = [p.numpy().copy() for p in net.parameters()]
    first = net.flat_parameters()[0]
    assert net.flat_parameters()[0] is first
    for b, p in zip(before, net.parameters()):
        np.testing.assert_array_equal(b, p.numpy())


def test_subset_of_flat_parameters_is_a_view(backend):
    net = _mlp(backend)
    (whole,) = net.flat_parameters()
    (tail,) = net[2].flat_parameters()
    assert tail.parent is whole and tail.is_current()
    tail.data[:] = 2.0
    np.testing.assert_array_equal(net[2].weight.numpy(), 2.0)
    assert whole.is_current()


def test_non_contiguous_subset_rebinds_and_invalidates(backend):
    net = _mlp(backend)
    (whole,) = net.flat_parameters()
    weights = [net[0].weight, net[2].weight]
    (fb,) = nn.flatten_parameters(weights)
    assert fb.parent is None and not whole.is_current()
    np.testing.assert_array_equal(backend.to_numpy(fb.data)[:35], net[0].weight.numpy().ravel(order="K"))


def test_linear_weights_are_column_major_and_stay_so_in_flat_buffers(backend):
    # an (in, out) row-major block: the weight-gradient GEMM's output is tall, which OpenBLAS splits well
    lin = nn.Linear(5, 3, backend=backend)
    w = backend.to_numpy(lin.weight.data)
    assert w.shape == (3, 5) and w.flags.f_contiguous and not w.flags.c_contiguous
    before = lin.weight.numpy().copy()
    (fb,) = lin.flat_parameters()
    for p in (lin.weight.data, lin.weight.grad):
        assert backend.to_numpy(p).flags.f_contiguous
    np.testing.assert_array_equal(lin.weight.numpy(), before)
    np.testing.assert_array_equal(backend.to_numpy(fb.data)[:15], before.T.ravel())
    (sub,) = nn.flatten_parameters([lin.weight])  # a view of the first run
    assert sub.parent is fb and backend.to_numpy(lin.weight.data).flags.f_contiguous
    (copied,) = nn.flatten_parameters([lin.bias, lin.weight])  # out of order: copied in and rebound
    assert copied.parent is None and backend.to_numpy(lin.weight.data).flags.f_contiguous
    np.testing.assert_array_equal(lin.weight.numpy(), before)


def test_mixed_dtypes_get_one_buffer_each(backend):
    net = nn.Sequential(nn.Linear(3, 2, backend=backend), nn.Linear(2, 2, dtype="float64", backend=backend))
    buffers = nn.flatten_parameters(net.parameters())
    assert sorted(str(b.dtype) for b in buffers) == ["float32", "float64"]


def test_backward_accumulates_into_flat_grad_and_zero_grad_clears(backend):
    net = _mlp(backend)
    (fb,) = net.flat_parameters()
    x = mt.tensor(np.ones((4, 5), dtype=np.float32))
    net(x).sum().backward()
    first = backend.to_numpy(fb.grad).copy()
    assert np.abs(first).sum() > 0
    net(x).sum().backward()
    np.testing.assert_allclose(backend.to_numpy(fb.grad), 2 * first, rtol=1e-6)
    net.zero_grad()
    assert not backend.to_numpy(fb.grad).any()


def test_sequential_fuses_linear_and_activation(backend, rng):
    lin = nn.Linear(6, 4, backend=backend)
    act = nn.LeakyReLU(0.2, backend=backend)
    x = rng.standard_normal((8, 6)).astype(np.float32)
    fused = nn.Sequential(lin, act)(mt.tensor(x))
    assert fused._parents and fused._parents[1] is lin.weight  # one node: linear(x, w, b)
    unfused = act(lin(mt.tensor(x)))
    np.testing.assert_allclose(fused.numpy(), unfused.numpy(), rtol=1e-6)


def test_sequential_plan_follows_appended_modules(backend):
    net = nn.Sequential(nn.Linear(3, 3, backend=backend))
    x = mt.tensor(-np.ones((2, 3), dtype=np.float32))
    net(x)
    net.append(nn.ReLU())
    assert (net(x).numpy() >= 0).all()


@pytest.mark.parametrize("activation", ["identity", "relu", "tanh", "logistic", "gelu", "elu", "softplus"])
def test_linear_gradients_match_finite_differences(backend, activation, rng):
    lin = nn.Linear(4, 3, activation=activation, dtype="float64", backend=backend)
    x = rng.standard_normal((5, 4))
    gradcheck(lambda x, w, b: F.linear(x, w, b, activation), x, lin.weight.numpy(), lin.bias.numpy())


def test_linear_casts_input_to_its_dtype(backend):
    lin = nn.Linear(2, 2, backend=backend)
    assert lin(np.ones((1, 2))).dtype == np.float32
    assert lin(mt.tensor(np.ones((1, 2)))).dtype == np.float32


def test_linear_rejects_wrong_feature_count(backend):
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 4\)"):
        nn.Linear(4, 2, backend=backend)(np.ones((3, 5), dtype=np.float32))


def test_linear_default_init_scale(backend):
    mt.manual_seed(0)
    relu = nn.Linear(400, 300, activation="relu", backend=backend).weight.numpy()
    tanh = nn.Linear(400, 300, activation="tanh", backend=backend).weight.numpy()
    assert abs(relu.std() - np.sqrt(2 / 400)) < 0.003  # He
    assert abs(tanh.std() - np.sqrt(2 / 700)) < 0.003  # Glorot
    assert np.abs(relu).max() <= np.sqrt(6 / 400) + 1e-6


def test_train_eval_modes_propagate(backend):
    net = nn.Sequential(nn.Linear(2, 2, backend=backend), nn.Dropout(0.5, backend=backend))
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_dropout_is_identity_in_eval_and_scales_in_training(backend):
    mt.manual_seed(0)
    drop = nn.Dropout(0.25, backend=backend)
    x = mt.tensor(np.ones((200, 50), dtype=np.float32))
    y = drop(x).numpy()
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.02
    drop.eval()
    assert drop(x) is x


def test_dropout_rejects_bad_probability(backend):
    with pytest.raises(ValueError, match="dropout probability"):
        nn.Dropout(1.5, backend=backend)


def test_batchnorm_training_normalizes_and_updates_running_stats(backend, rng):
    bn = nn.BatchNorm1d(3, momentum=0.5, backend=backend)
    x = (rng.standard_normal((64, 3)) * 4 + 2).astype(np.float32)
    y = bn(mt.tensor(x)).numpy()
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(y.std(0), 1, atol=1e-3)
    np.testing.assert_allclose(backend.to_numpy(bn.running_mean), 0.5 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(backend.to_numpy(bn.running_var), 0.5 + 0.5 * x.var(0, ddof=1), rtol=1e-5)


def test_batchnorm_eval_uses_running_stats(backend):
    bn = nn.BatchNorm1d(2, backend=backend).eval()
    bn.running_mean[...] = backend.asarray([1.0, -1.0])
    bn.running_var[...] = backend.asarray([4.0, 1.0])
    y = bn(mt.tensor(np.array([[3.0, 0.0]], dtype=np.float32))).numpy()
    np.testing.assert_allclose(y, [[2 / np.sqrt(4 + 1e-5), 1 / np.sqrt(1 + 1e-5)]], rtol=1e-5)


def test_batchnorm_rejects_wrong_channels(backend):
    with pytest.raises(ValueError, match="3 channels"):
        nn.BatchNorm1d(3, backend=backend)(mt.tensor(np.ones((4, 2), dtype=np.float32)))


def test_residual_adds_the_skip_connection(backend, rng):
    inner = nn.Linear(4, 4, backend=backend)
    res = nn.Residual(inner)
    x = mt.tensor(rng.standard_normal((3, 4)).astype(np.float32))
    np.testing.assert_allclose(res(x).numpy(), inner(x).numpy() + x.numpy(), rtol=1e-6)


def test_residual_with_projection_and_shape_check(backend):
    x = mt.tensor(np.ones((2, 4), dtype=np.float32))
    proj = nn.Residual(nn.Linear(4, 3, backend=backend), shortcut=nn.Linear(4, 3, backend=backend))
    assert proj(x).shape == (2, 3)
    with pytest.raises(ValueError, match="shortcut projection"):
        nn.Residual(nn.Linear(4, 3, backend=backend))(x)


def test_residual_gradient_flows_through_both_paths(backend, rng):
    res = nn.Residual(nn.Sequential(nn.Linear(3, 3, dtype="float64", backend=backend), nn.Tanh()))
    gradcheck(lambda x: res(x), rng.standard_normal((2, 3)))


def test_flatten_and_identity(backend):
    x = mt.tensor(np.zeros((2, 3, 4), dtype=np.float32))
    assert nn.Flatten()(x).shape == (2, 12)
    assert nn.Identity()(x) is x


def test_state_dict_round_trip_and_in_place_load(backend):
    net = nn.Sequential(nn.Linear(3, 4, backend=backend), nn.BatchNorm1d(4, backend=backend))
    state = net.state_dict()
    assert set(state) == {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"}
    assert all(isinstance(v, np.ndarray) for v in state.values())
    (fb,) = net.flat_parameters()
    other = nn.Sequential(nn.Linear(3, 4, backend=backend), nn.BatchNorm1d(4, backend=backend))
    state["1.running_mean"] = np.full(4, 7.0, dtype=np.float32)
    other.load_state_dict(state)
    net.load_state_dict(other.state_dict())
    assert net.flat_parameters()[0] is fb  # loading writes into the flat buffer in place
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(net.state_dict()[k], v)


def test_load_state_dict_rejects_mismatch_without_changing_anything(backend):
    net = _mlp(backend)
    before = net.state_dict()
    bad = dict(before, **{"0.bias": np.zeros(99, dtype=np.float32), "0.weight": np.ones((7, 5))})
    with pytest.raises(ValueError, match="shape mismatch for '0.bias'"):
        net.load_state_dict(bad)
    np.testing.assert_array_equal(net.state_dict()["0.weight"], before["0.weight"])
    with pytest.raises(KeyError, match="missing keys"):
        net.load_state_dict({"0.weight": before["0.weight"]})
    net.load_state_dict({"0.weight": before["0.weight"]}, strict=False)


def test_module_pickles(backend):
    net = _mlp(backend)
    x = np.ones((2, 5), dtype=np.float32)
    clone = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(clone(x).numpy(), net(x).numpy())


def test_to_moves_to_same_backend_is_noop(backend):
    net = _mlp(backend)
    (fb,) = net.flat_parameters()
    assert net.to(backend) is net
    assert net.flat_parameters()[0] is fb


def test_to_another_backend_moves_parameters_and_buffers(backend):
    class Other(mt.backend.NumpyBackend):
        name = "other_for_to"

    mt.register_backend("other_for_to", Other)
    try:
        net = nn.Sequential(nn.Linear(3, 2, backend=backend), nn.BatchNorm1d(2, backend=backend))
        old = net.state_dict()
        (fb,) = net.flat_parameters()
        net.to("other_for_to")
        assert all(p.backend.name == "other_for_to" for p in net.parameters())
        assert net[1].backend.name == "other_for_to" and not fb.is_current()
        for k, v in net.state_dict().items():
            np.testing.assert_array_equal(v, old[k])
        out = net(mt.tensor(np.ones((4, 3), dtype=np.float32), backend="other_for_to"))
        assert out.backend.name == "other_for_to"
    finally:
        mt.backend.unregister_backend("other_for_to")


def test_repr_reads_like_pytorch(backend):
    text = repr(nn.Sequential(nn.Linear(2, 3, activation="relu", backend=backend), nn.Dropout(0.1)))
    assert "(0): Linear(in_features=2, out_features=3, bias=True, activation='relu')" in text
    assert "(1): Dropout(p=0.1)" in text


def test_unknown_attribute_raises_attribute_error(backend):
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        nn.Linear(2, 2, backend=backend).nope


def test_activation_modules_match_functional(backend, rng):
    x = mt.tensor(rng.standard_normal((4, 5)).astype(np.float32))
    cases = [
        (nn.ReLU(), lambda a: np.maximum(a, 0)),
        (nn.Tanh(), np.tanh),
        (nn.Sigmoid(), lambda a: 1 / (1 + np.exp(-a))),
        (nn.LeakyReLU(0.1), lambda a: np.where(a > 0, a, 0.1 * a)),
        (nn.ELU(0.5), lambda a: np.where(a > 0, a, 0.5 * np.expm1(a))),
        (nn.Softplus(), lambda a: np.log1p(np.exp(a))),
        (nn.Softmax(), lambda a: np.exp(a) / np.exp(a).sum(-1, keepdims=True)),
        (nn.LogSoftmax(), lambda a: a - np.log(np.exp(a).sum(-1, keepdims=True))),
    ]
    for module, expected in cases:
        np.testing.assert_allclose(module(x).numpy(), expected(x.numpy()), rtol=1e-5, atol=1e-6)


def test_activation_modules_validate_parameters():
    with pytest.raises(ValueError, match="negative_slope"):
        nn.LeakyReLU(-1)
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")


def test_views_of_untouched_parameters_stay_current(backend):
    net = nn.Sequential(*(nn.Linear(3, 3, backend=backend) for _ in range(3)))
    (whole,) = net.flat_parameters()
    (last,) = net[2].flat_parameters()
    nn.flatten_parameters([net[0].weight, net[1].weight])  # not a contiguous run: rebinds those two
    assert last.is_current() and not whole.is_current()


def _reference_grads(w, b, xs):
    """d/dw, d/db of sum over inputs of sum(x @ w.T + b) (+ sum(w**2) for the extra use)."""
    gw = sum(np.ones((x.shape[0], w.shape[0])).T @ x for x in xs)
    gb = sum(np.full(w.shape[0], x.shape[0], dtype=float) for x in xs)
    return gw, gb


@pytest.mark.parametrize("passes", [1, 2])
def test_linear_gradients_written_into_zeroed_flat_buffer_still_accumulate(backend, passes):
    layer = mt.nn.Linear(3, 2, backend=backend, dtype="float64")
    opt = mt.optim.SGD(layer, lr=0.1)
    x1, x2 = np.arange(6.0).reshape(2, 3), np.ones((4, 3))
    opt.zero_grad()
    for _ in range(passes):  # no zero_grad in between: gradients add up
        (layer(x1).sum() + layer(x2).sum()).backward()  # the weight is used twice in one graph
    gw, gb = _reference_grads(layer.weight.numpy(), None, [x1, x2])
    np.testing.assert_allclose(backend.to_numpy(layer.weight.grad), passes * gw)
    np.testing.assert_allclose(backend.to_numpy(layer.bias.grad), passes * gb)


def test_a_parameter_used_outside_linear_first_is_not_overwritten(backend):
    layer = mt.nn.Linear(3, 2, backend=backend, dtype="float64")
    opt = mt.optim.SGD(layer, lr=0.1)
    x = np.ones((2, 3))
    opt.zero_grad()
    (layer.weight * 2.0).sum().backward()  # accumulates 2 into every weight gradient
    layer(x).sum().backward()  # must add, not overwrite
    gw, _ = _reference_grads(layer.weight.numpy(), None, [x])
    np.testing.assert_allclose(backend.to_numpy(layer.weight.grad), gw + 2.0)


@pytest.mark.parametrize(
    "make",
    [nn.ReLU, nn.Tanh, lambda: nn.Softmax(1), lambda: nn.LogSoftmax(1), nn.Flatten, lambda: nn.Dropout(0.5),
     lambda: nn.BatchNorm2d(3)],
    ids=["ReLU", "Tanh", "Softmax", "LogSoftmax", "Flatten", "Dropout", "BatchNorm2d"],
)  # fmt: skip
def test_layers_take_arrays_as_linear_does(make):
    x = np.random.default_rng(0).standard_normal((4, 3, 2, 2)).astype(np.float32)
    layer = make()
    out = layer(x)
    assert isinstance(out, mt.Tensor) and out.shape[0] == 4
    if not isinstance(layer, nn.Dropout):  # the same as from a Tensor
        np.testing.assert_allclose(out.numpy(), layer(mt.Tensor(x)).numpy(), rtol=1e-6)

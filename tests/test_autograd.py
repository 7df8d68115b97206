"""Tensor and the tape: construction, backward, accumulation, graph release, no_grad, detach, backends."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import minitrain as mt
from minitrain import functional as F
from minitrain.backend import NumpyBackend, get_backend, register_backend, unregister_backend


def leaf(values, dtype="float64"):
    return mt.tensor(np.array(values, dtype=dtype), requires_grad=True)


# ------------------------------------------------------------------------------------------ construction
@pytest.mark.parametrize(
    ("data", "dtype"),
    [
        (1.5, np.float32),
        ([1.0, 2.0], np.float32),
        ([[1, 2.5]], np.float32),
        (3, np.int64),
        ([1, 2, 3], np.int64),
        ([True, False], np.bool_),
        (np.array([1.0, 2.0]), np.float64),
        (np.array([1.0], dtype=np.float16), np.float16),
        (np.array([1, 2], dtype=np.int32), np.int32),
    ],
    ids=["float", "float list", "mixed list", "int", "int list", "bool list", "f64 array", "f16 array", "i32 array"],
)
def test_default_dtype(backend, data, dtype):
    assert mt.tensor(data).dtype == dtype


def test_explicit_dtype_converts(backend):
    assert mt.tensor([1, 2], dtype="float64").dtype == np.float64


def test_tensor_from_tensor_keeps_values_and_drops_graph(backend):
    x = mt.tensor([1.0, 2.0], requires_grad=True)
    t = mt.Tensor(x * 2)
    np.testing.assert_array_equal(t.numpy(), [2.0, 4.0])
    assert t.is_leaf and not t.requires_grad


def test_tensor_lives_on_the_current_backend(backend):
    assert mt.tensor([1.0]).backend is backend


@pytest.mark.parametrize(
    ("data", "shape", "ndim", "size"),
    [
        (2.0, (), 0, 1),
        ([1.0, 2.0, 3.0], (3,), 1, 3),
        (np.zeros((2, 3, 4)), (2, 3, 4), 3, 24),
        (np.zeros((0, 2)), (0, 2), 2, 0),
    ],
)
def test_shape_ndim_size(backend, data, shape, ndim, size):
    t = mt.tensor(data)
    assert (t.shape, t.ndim, t.size) == (shape, ndim, size)


def test_len_is_first_axis(backend):
    assert len(mt.tensor(np.zeros((4, 2)))) == 4


def test_item_of_one_element_tensor(backend):
    value = mt.tensor([[2.5]]).item()
    assert value == 2.5
    assert isinstance(value, float)


def test_item_of_many_elements_raises(backend):
    with pytest.raises(ValueError, match="one element"):
        mt.tensor([1.0, 2.0]).item()


def test_numpy_returns_host_array(backend):
    out = mt.tensor([[1.0, 2.0]]).numpy()
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, [[1.0, 2.0]])


def test_repr_shows_values_dtype_and_requires_grad(backend):
    r = repr(mt.tensor([1.0, 2.0], requires_grad=True))
    assert r.startswith("tensor([1., 2.]")
    assert "dtype=float32" in r
    assert "requires_grad=True" in r


def test_repr_omits_requires_grad_when_false(backend):
    assert "requires_grad" not in repr(mt.tensor([1.0]))


def test_array_protocol(backend):
    np.testing.assert_array_equal(np.asarray(mt.tensor([1.0, 2.0])), [1.0, 2.0])


def test_requires_grad_on_int_tensor_raises(backend):
    with pytest.raises(TypeError, match="floating-point"):
        mt.tensor([1, 2], requires_grad=True)


def test_new_tensor_is_a_leaf_without_grad(backend):
    t = mt.tensor([1.0], requires_grad=True)
    assert t.is_leaf and t.grad is None


# ------------------------------------------------------------------------------------------ backward
def test_backward_on_scalar(backend):
    x = leaf([1.0, 2.0, 3.0])
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0, 6.0])


def test_backward_on_zero_dim_leaf(backend):
    x = leaf(3.0)
    (x * x).backward()
    assert float(x.grad) == 6.0


def test_backward_non_scalar_without_grad_raises(backend):
    x = leaf([1.0, 2.0])
    with pytest.raises(ValueError, match="non-scalar"):
        (x * 2).backward()


def test_backward_with_explicit_grad(backend):
    x = leaf([1.0, 2.0, 3.0])
    (x * 2).backward(np.array([1.0, 10.0, 100.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 20.0, 200.0])


def test_backward_explicit_grad_may_be_a_tensor(backend):
    x = leaf([1.0, 2.0])
    (x * 3).backward(mt.tensor(np.array([1.0, -1.0])))
    np.testing.assert_array_equal(x.grad, [3.0, -3.0])


def test_backward_explicit_grad_of_wrong_shape_raises(backend):
    x = leaf([1.0, 2.0])
    with pytest.raises(ValueError, match="shape"):
        (x * 2).backward(np.ones(3))


def test_backward_on_tensor_without_graph_raises(backend):
    with pytest.raises(RuntimeError, match="does not require grad"):
        mt.tensor([1.0]).sum().backward()


def test_gradients_accumulate_across_backward_calls(backend):
    x = leaf([1.0, 2.0])
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0 + 2.0, 3.0 + 4.0])


def test_leaf_gradients_do_not_alias_each_other(backend):
    x, z = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    (x + z).sum().backward()  # both leaves receive the same upstream array
    (x * 2).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])
    np.testing.assert_array_equal(z.grad, [1.0, 1.0])


def test_leaf_gradient_does_not_alias_the_explicit_grad(backend):
    x, upstream = leaf([1.0, 2.0]), np.array([1.0, 1.0])
    (x + 1.0).backward(upstream)
    (x + 1.0).backward(upstream)
    np.testing.assert_array_equal(upstream, [1.0, 1.0])
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


def test_diamond_graph_sums_both_paths(backend):
    x = leaf([1.0, 2.0])
    a = x * 2
    d = (a * 3 + a * 4).sum()
    d.backward()
    np.testing.assert_array_equal(x.grad, [14.0, 14.0])


def test_shared_subgraph_used_at_different_depths(backend):
    x = leaf([0.5, -1.5])
    a = x * x  # da/dx = 2x
    b = a * a  # b = x^4
    c = (b + a + x).sum()  # dc/dx = 4x^3 + 2x + 1
    c.backward()
    xv = np.array([0.5, -1.5])
    np.testing.assert_allclose(x.grad, 4 * xv**3 + 2 * xv + 1, rtol=1e-15)


def test_same_tensor_twice_in_one_op(backend):
    x = leaf([3.0])
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [6.0])


def test_retain_graph_allows_a_second_backward(backend):
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad, [4.0, 8.0])


def test_second_backward_without_retain_graph_raises(backend):
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_leaves_not_requiring_grad_get_no_grad(backend):
    x, c = leaf([1.0]), mt.tensor(np.array([2.0]))
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_array_equal(x.grad, [2.0])


def test_intermediate_tensors_keep_no_grad(backend):
    x = leaf([1.0])
    y = x * 2
    (y * 3).sum().backward()
    assert y.grad is None
    assert not y.is_leaf


def test_float32_gradients_stay_float32(backend):
    x = mt.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    assert x.grad.dtype == np.float32


def test_requires_grad_toggle_on_leaf(backend):
    x = mt.tensor([1.0]).requires_grad_()
    assert x.requires_grad
    assert not x.requires_grad_(False).requires_grad


def test_requires_grad_toggle_on_non_leaf_raises(backend):
    y = leaf([1.0]) * 2
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad_(False)


# ------------------------------------------------------------------------------------------ no_grad
def test_no_grad_records_nothing(backend):
    x = leaf([1.0])
    with mt.no_grad():
        assert not mt.is_grad_enabled()
        y = x * 2
    assert not y.requires_grad and y.is_leaf
    assert mt.is_grad_enabled()


def test_enable_grad_inside_no_grad_records(backend):
    x = leaf([1.0])
    with mt.no_grad():
        with mt.enable_grad():
            y = x * 2
        z = x * 2
    assert y.requires_grad and not z.requires_grad


def test_no_grad_nests_and_restores(backend):
    with mt.no_grad():
        with mt.no_grad():
            assert not mt.is_grad_enabled()
        assert not mt.is_grad_enabled()
        with mt.enable_grad():
            assert mt.is_grad_enabled()
        assert not mt.is_grad_enabled()
    assert mt.is_grad_enabled()


def test_no_grad_restores_after_an_exception(backend):
    with pytest.raises(KeyError), mt.no_grad():
        raise KeyError("boom")
    assert mt.is_grad_enabled()


def test_no_grad_is_invisible_to_a_thread_started_inside_it(backend):
    seen = []
    with mt.no_grad():
        worker = threading.Thread(target=lambda: seen.append(mt.is_grad_enabled()))
        worker.start()
        worker.join()
    assert seen == [True]


def test_no_grad_in_a_thread_does_not_affect_other_threads(backend):
    inside = threading.Barrier(2, timeout=10)
    seen = []

    def work():
        with mt.no_grad():
            inside.wait()  # the main thread looks while this one is inside no_grad
            inside.wait()

    worker = threading.Thread(target=work)
    worker.start()
    inside.wait()
    seen.append(mt.is_grad_enabled())
    inside.wait()
    worker.join()
    assert seen == [True]


# ------------------------------------------------------------------------------------------ detach
def test_detach_shares_data_and_cuts_the_graph(backend):
    x = leaf([1.0, 2.0])
    d = (x * 3).detach()
    assert not d.requires_grad and d.is_leaf
    (x * d).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 6.0])  # d counted as a constant


def test_detach_shares_memory(backend):
    x = leaf([1.0, 2.0])
    assert x.detach().data is x.data


# ------------------------------------------------------------------------------------------ backends
class OtherBackend(NumpyBackend):
    """The reference kernels under another name: a second backend."""

    name = "other"


@pytest.fixture
def other():
    register_backend("other", OtherBackend)
    try:
        yield get_backend("other")
    finally:
        unregister_backend("other")


def test_tensor_records_its_backend(other):
    assert mt.tensor([1.0], backend="other").backend is other
    assert "backend='other'" in repr(mt.tensor([1.0], backend="other"))


@pytest.mark.parametrize(
    "op",
    [F.add, F.sub, F.mul, F.div, F.matmul, F.maximum, lambda a, b: F.concatenate([a, b])],
    ids=["add", "sub", "mul", "div", "matmul", "maximum", "concatenate"],
)
def test_ops_on_tensors_of_different_backends_raise(other, op):
    a = mt.tensor(np.ones((2, 2)), backend="numpy")
    b = mt.tensor(np.ones((2, 2)), backend="other")
    with pytest.raises(ValueError, match="different backends"):
        op(a, b)


def test_tensor_from_a_tensor_of_another_backend_copies_through_the_host():
    class Elsewhere(NumpyBackend):
        name = "elsewhere_for_copy"

    register_backend("elsewhere_for_copy", Elsewhere)
    try:
        src = mt.tensor([1.0, 2.0], backend="numpy")
        moved = mt.Tensor(src, backend="elsewhere_for_copy")
        assert moved.backend.name == "elsewhere_for_copy"
        np.testing.assert_array_equal(moved.numpy(), [1.0, 2.0])
    finally:
        unregister_backend("elsewhere_for_copy")

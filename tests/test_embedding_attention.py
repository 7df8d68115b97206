"""Embedding, LayerNorm, MultiheadAttention, TransformerEncoderLayer: gradients, masks, PyTorch, backends, state."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest

import minitrain as mt
from minitrain import functional as F
from minitrain import nn
from minitrain.backend import get_backend
from minitrain.testing import gradcheck

E, HEADS = 6, 2


def _flat(*tensors):
    return F.concatenate([F.reshape(t, (-1,)) for t in tensors if t is not None])


def _swap(module, **tensors):
    """Put the given tensors in place of the module's parameters (dotted names), so gradcheck can vary them."""
    for name, t in tensors.items():
        *path, leaf = name.split("__")
        owner = module
        for part in path:
            owner = getattr(owner, part)
        owner._parameters[leaf] = t
    return module


def _loss_weights(shape, seed=7):
    return np.random.default_rng(seed).standard_normal(shape)


def _backward(out, seed=7):
    out = out[0] if isinstance(out, tuple) else out
    F.sum(F.mul(out, mt.tensor(_loss_weights(out.shape, seed), backend=out.backend))).backward()


# ------------------------------------------------------------------------------------------ gradients
def test_embedding_gradcheck_with_repeated_indices(backend):
    # padding_idx and scale_grad_by_freq change the gradient on purpose: checked against PyTorch below
    idx = np.array([[0, 2, 2], [3, 0, 2]])
    assert gradcheck(lambda w: F.embedding(idx, w), np.random.default_rng(0).standard_normal((5, 3)), backend=backend)


def test_layer_norm_gradcheck(backend, rng):
    x, w, b = rng.standard_normal((3, 2, 4)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    assert gradcheck(lambda x, w, b: F.layer_norm(x, (2, 4), w, b), x, w, b, backend=backend)
    assert gradcheck(lambda x: F.layer_norm(x, 4, eps=1e-3), x, backend=backend)


def test_masked_softmax_gradcheck_with_a_fully_masked_row(backend, rng):
    mask = np.where(rng.random((3, 4)) < 0.4, -np.inf, rng.standard_normal((3, 4)))
    mask[1] = -np.inf
    assert gradcheck(lambda x: F.masked_softmax(x, mask), rng.standard_normal((2, 3, 4)), backend=backend)


@pytest.mark.parametrize("mask", ["none", "bool", "float", "causal"])
def test_scaled_dot_product_attention_gradcheck(backend, rng, mask):
    q, k, v = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 3))
    attn_mask = {"none": None, "bool": rng.random((3, 5)) < 0.7, "float": rng.standard_normal((2, 3, 5))}.get(mask)
    kw = {"is_causal": True} if mask == "causal" else {"attn_mask": attn_mask}
    assert gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, **kw), q, k, v, backend=backend)


@pytest.mark.parametrize("same", [True, False], ids=["self", "cross"])
def test_multihead_attention_gradcheck(backend, rng, same):
    mha = nn.MultiheadAttention(
        4, 2, dtype="float64", add_bias_kv=not same, kdim=None if same else 3, vdim=None if same else 3
    )
    q = rng.standard_normal((3, 2, 4))
    kv = q if same else rng.standard_normal((2, 2, 3))
    kpm = np.array([[False, False, True], [False, False, False]]) if same else None
    params = {n.replace(".", "__"): p.numpy() for n, p in mha.named_parameters()}

    def fn(q, kv, *ps):
        _swap(mha, **dict(zip(params, ps)))
        return _flat(*mha(q, q if same else kv, q if same else kv, key_padding_mask=kpm))

    assert gradcheck(fn, q, kv, *params.values(), backend=backend)


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_layer_gradcheck(backend, rng, norm_first):
    layer = nn.TransformerEncoderLayer(4, 2, dim_feedforward=5, dropout=0.0, norm_first=norm_first, dtype="float64")
    params = {n.replace(".", "__"): p.numpy() for n, p in layer.named_parameters()}

    def fn(x, *ps):
        _swap(layer, **dict(zip(params, ps)))
        return layer(x, is_causal=True)

    assert gradcheck(fn, rng.standard_normal((3, 2, 4)), *params.values(), backend=backend)


# ------------------------------------------------------------------------------------------ Embedding
def test_embedding_padding_row_starts_at_zero_and_gets_no_gradient(backend):
    emb = nn.Embedding(6, 4, padding_idx=-2)
    assert emb.padding_idx == 4 and not emb.weight.numpy()[4].any() and emb.weight.numpy()[3].any()
    out = emb(np.array([[4, 1, 4], [1, 1, 0]]))
    np.testing.assert_array_equal(out.numpy()[0, 0], 0.0)
    F.sum(out).backward()
    np.testing.assert_array_equal(emb.weight.grad[[0, 1, 4]], [[1.0] * 4, [3.0] * 4, [0.0] * 4])
    np.testing.assert_array_equal(emb.weight.grad[[2, 3, 5]], 0.0)


def test_embedding_gradient_into_the_flat_buffer_equals_a_plain_one(backend, rng):
    a, b = nn.Embedding(7, 3, padding_idx=1), nn.Embedding(7, 3, padding_idx=1)
    b.load_state_dict(a.state_dict())
    a.flat_parameters()
    a.zero_grad()  # the gradient is now known to be zero: the first one is written into it in place
    idx = rng.integers(0, 7, (4, 5))
    for emb in (a, b):
        _backward(emb(idx))
        _backward(emb(idx[:2]), seed=8)  # a second use accumulates
    np.testing.assert_allclose(a.weight.grad, b.weight.grad, rtol=1e-6)
    assert np.shares_memory(a.weight.grad, a.flat_parameters()[0].grad)


def test_embedding_init_is_standard_normal_and_input_is_checked(backend):
    w = nn.Embedding(400, 50).weight.numpy()
    assert w.dtype == np.float32 and abs(w.std() - 1.0) < 0.03 and abs(w.mean()) < 0.03
    emb = nn.Embedding(5, 2)
    with pytest.raises(IndexError, match="index 5 is out of range for 5 embeddings"):
        emb(np.array([0, 5]))
    with pytest.raises(IndexError, match="index -1"):
        emb(np.array([-1]))
    with pytest.raises(TypeError, match="indices must be integers"):
        emb(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="sparse gradients"):
        nn.Embedding(5, 2, sparse=True)


def test_embedding_from_pretrained_is_frozen_and_keeps_the_values(backend):
    table = np.arange(12.0).reshape(4, 3)
    emb = nn.Embedding.from_pretrained(table, padding_idx=0)
    assert emb.weight.dtype == np.float64 and not emb.weight.requires_grad
    np.testing.assert_array_equal(emb(np.array([0, 3])).numpy(), table[[0, 3]])
    assert nn.Embedding.from_pretrained(table, freeze=False).weight.requires_grad


# ------------------------------------------------------------------------------------------ LayerNorm
def test_layer_norm_normalizes_the_trailing_axes(backend, rng):
    x = rng.standard_normal((4, 3, 5)).astype(np.float32) * 3 + 2
    ln = nn.LayerNorm((3, 5))
    ln.weight.data[...] = backend.asarray(rng.standard_normal((3, 5)), dtype=np.float32)
    y = ln(x)
    z = (x - x.mean(axis=(1, 2), keepdims=True)) / np.sqrt(x.var(axis=(1, 2), keepdims=True) + 1e-5)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), z * ln.weight.numpy(), rtol=1e-5, atol=1e-5)
    assert [n for n, _ in nn.LayerNorm(5, bias=False).named_parameters()] == ["weight"]
    assert nn.LayerNorm(5, elementwise_affine=False).parameters() == []
    with pytest.raises(ValueError, match="does not end with normalized_shape"):
        ln(np.zeros((4, 5, 3), np.float32))


# ------------------------------------------------------------------------------------------ MultiheadAttention
def test_multihead_attention_parameters_have_pytorchs_names_shapes_and_init():
    mha = nn.MultiheadAttention(64, 4)
    assert [(n, p.shape) for n, p in mha.named_parameters()] == [
        ("in_proj_weight", (192, 64)), ("in_proj_bias", (192,)), ("out_proj.weight", (64, 64)), ("out_proj.bias", (64,))
    ]  # fmt: skip
    w_in, w_out = mha.in_proj_weight.numpy(), mha.out_proj.weight.numpy()
    glorot, kaiming = math.sqrt(6 / (64 + 192)), 1 / math.sqrt(64)
    assert np.abs(w_in).max() <= glorot and abs(w_in.std() - glorot / math.sqrt(3)) < 0.05 * glorot
    assert np.abs(w_out).max() <= kaiming and abs(w_out.std() - kaiming / math.sqrt(3)) < 0.05 * kaiming
    assert not mha.in_proj_bias.numpy().any() and not mha.out_proj.bias.numpy().any()
    separate = nn.MultiheadAttention(4, 2, kdim=3, vdim=5, add_bias_kv=True, bias=False)
    assert [(n, p.shape) for n, p in separate.named_parameters()] == [
        ("q_proj_weight", (4, 4)), ("k_proj_weight", (4, 3)), ("v_proj_weight", (4, 5)), ("bias_k", (1, 1, 4)),
        ("bias_v", (1, 1, 4)), ("out_proj.weight", (4, 4)),
    ]  # fmt: skip


def test_key_padding_mask_hides_the_padded_keys(backend, rng):
    mha = nn.MultiheadAttention(E, HEADS, batch_first=True)
    x = rng.standard_normal((2, 5, E)).astype(np.float32)
    kpm = np.array([[False] * 5, [False, False, False, True, True]])
    out, weights = mha(x, x, x, key_padding_mask=kpm, average_attn_weights=False)
    assert weights.shape == (2, HEADS, 5, 5) and not weights.numpy()[1, :, :, 3:].any()
    np.testing.assert_allclose(weights.numpy().sum(-1), 1.0, rtol=1e-6)
    changed = x.copy()
    changed[1, 3:] = 100.0  # what a padded key holds does not matter to the other queries
    out2, _ = mha(changed, changed, changed, key_padding_mask=kpm)
    np.testing.assert_allclose(out2.numpy()[1, :3], out.numpy()[1, :3], rtol=1e-5, atol=1e-6)
    float_kpm = np.where(kpm, -np.inf, 0.0).astype(np.float32)
    np.testing.assert_array_equal(mha(x, x, x, key_padding_mask=float_kpm)[0].numpy(), out.numpy())


def test_causal_mask_keeps_the_future_out(backend, rng):
    mha = nn.MultiheadAttention(E, HEADS)
    x = rng.standard_normal((6, 2, E)).astype(np.float32)
    out, weights = mha(x, x, x, is_causal=True)
    assert not np.triu(weights.numpy(), 1).any()
    later = x.copy()
    later[4:] = rng.standard_normal((2, 2, E))
    np.testing.assert_allclose(mha(later, later, later, is_causal=True)[0].numpy()[:4], out.numpy()[:4], rtol=1e-5)
    for mask in (np.triu(np.ones((6, 6), bool), 1), nn.generate_square_subsequent_mask(6)):
        np.testing.assert_array_equal(mha(x, x, x, attn_mask=mask)[0].numpy(), out.numpy())


def test_a_query_with_no_key_to_attend_gets_zero_weights(backend, rng):
    mha = nn.MultiheadAttention(E, HEADS, batch_first=True)
    x = rng.standard_normal((2, 3, E)).astype(np.float32)
    out, weights = mha(x, x, x, key_padding_mask=np.array([[True] * 3, [False] * 3]))
    assert not weights.numpy()[0].any() and np.isfinite(out.numpy()).all()
    np.testing.assert_allclose(out.numpy()[0], np.broadcast_to(mha.out_proj.bias.numpy(), (3, E)))


def test_unbatched_input_and_no_weights(backend, rng):
    mha = nn.MultiheadAttention(E, HEADS, kdim=4, vdim=3)
    q, k, v = rng.standard_normal((5, E)), rng.standard_normal((7, 4)), rng.standard_normal((7, 3))
    out, weights = mha(q, k, v, key_padding_mask=np.array([False] * 6 + [True]))
    assert out.shape == (5, E) and weights.shape == (5, 7)
    batched, _ = mha(q[:, None], k[:, None], v[:, None], key_padding_mask=np.array([[False] * 6 + [True]]))
    np.testing.assert_allclose(out.numpy(), batched.numpy()[:, 0], rtol=1e-6)
    assert mha(q, k, v, need_weights=False)[1] is None


def test_attention_dropout_draws_from_the_modules_generator(backend, rng):
    x = rng.standard_normal((4, 2, E)).astype(np.float32)
    a = nn.MultiheadAttention(E, HEADS, dropout=0.5)
    b = copy.deepcopy(a)
    first, second = a(x, x, x)[0].numpy(), a(x, x, x)[0].numpy()
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(b(x, x, x)[0].numpy(), first)  # the same generator state, the same masks
    a.eval()
    np.testing.assert_array_equal(a(x, x, x)[0].numpy(), a(x, x, x)[0].numpy())
    generators = [n for n, _ in nn.TransformerEncoderLayer(E, HEADS, 8).named_generators()]
    assert generators == ["self_attn.generator", "dropout.generator", "dropout1.generator", "dropout2.generator"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: nn.MultiheadAttention(6, 4), "multiple of num_heads"),
        (lambda: nn.MultiheadAttention(6, 2)(np.zeros((3, 2, 5)), np.zeros((3, 2, 5)), np.zeros((3, 2, 5))), "query"),
        (lambda: nn.MultiheadAttention(6, 2)(*[np.zeros((3, 2, 6))] * 3, attn_mask=np.zeros((2, 3))), "attn_mask"),
        (lambda: nn.MultiheadAttention(6, 2)(*[np.zeros((3, 2, 6))] * 3, key_padding_mask=np.zeros((3, 2))), "key_"),
        (lambda: nn.MultiheadAttention(6, 2)(np.zeros((3, 2, 6)), *[np.zeros((4, 1, 6))] * 2), "share the batch"),
    ],
)
def test_bad_attention_input_says_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------------------ TransformerEncoderLayer
def test_transformer_encoder_layer_has_pytorchs_structure():
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16)
    assert [n for n, _ in layer.named_parameters()] == [
        "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias",
        "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
        "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
    ]  # fmt: skip
    assert layer.dropout.p == 0.1 and layer.linear1.bias.numpy().any()  # PyTorch's Linear init: biases too
    assert np.abs(layer.linear2.bias.numpy()).max() <= 1 / math.sqrt(16)


def test_transformer_encoder_layer_dropout_trains_and_evaluates(backend, rng):
    layer = nn.TransformerEncoderLayer(E, HEADS, 12, dropout=0.3, batch_first=True)
    x = rng.standard_normal((2, 5, E)).astype(np.float32)
    assert not np.array_equal(layer(x).numpy(), layer(x).numpy())
    layer.eval()
    y = layer(x, src_key_padding_mask=np.array([[False] * 5, [False] * 4 + [True]]))
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_array_equal(
        y.numpy(), layer(x, src_key_padding_mask=np.array([[0.0] * 5, [0] * 4 + [-np.inf]])).numpy()
    )


# ------------------------------------------------------------------------------------------ PyTorch
def _torch_module(ours, make):
    torch = pytest.importorskip("torch")
    theirs = make(torch)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return torch, theirs


def _compare(torch, ours, theirs, inputs, consts, call_ours, call_theirs):
    """Forward and every gradient (of ``inputs`` and the parameters) to 1e-10 in float64; ``consts`` (masks,
    indices) are passed after the inputs, as arrays to ours and tensors to PyTorch's."""
    mine = [mt.tensor(a, requires_grad=True) for a in inputs]
    their = [torch.tensor(a, requires_grad=True) for a in inputs]
    out = call_ours(*mine, *consts)
    out_t = call_theirs(*their, *(torch.from_numpy(np.asarray(c)) for c in consts))
    outs = out if isinstance(out, tuple) else (out,)
    outs_t = out_t if isinstance(out_t, tuple) else (out_t,)
    for o, ot in zip(outs, outs_t):
        if o is None:
            assert ot is None
            continue
        np.testing.assert_allclose(o.numpy(), ot.detach().numpy(), rtol=1e-10, atol=1e-12)
    w = _loss_weights(outs[0].shape)
    _backward(outs[0])
    (outs_t[0] * torch.from_numpy(w)).sum().backward()
    for m, t in zip(mine, their):
        np.testing.assert_allclose(m.grad, t.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, theirs.get_parameter(name).grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("padding_idx", "freq", "max_norm"), [(None, False, None), (2, True, None), (-1, False, 1.5)])
def test_embedding_matches_pytorch(backend, rng, padding_idx, freq, max_norm):
    ours = nn.Embedding(6, 4, padding_idx=padding_idx, scale_grad_by_freq=freq, max_norm=max_norm, dtype="float64")
    kw = {"padding_idx": padding_idx, "scale_grad_by_freq": freq, "max_norm": max_norm}
    torch, theirs = _torch_module(ours, lambda torch: torch.nn.Embedding(6, 4, **kw, dtype=torch.float64))
    idx = rng.integers(0, 6, (3, 5))
    _compare(torch, ours, theirs, [], [idx], ours, theirs)
    np.testing.assert_allclose(ours.weight.numpy(), theirs.weight.detach().numpy(), rtol=1e-12)  # renormed alike


@pytest.mark.parametrize(("shape", "affine", "bias"), [(6, True, True), ((3, 6), True, False), (6, False, False)])
def test_layer_norm_matches_pytorch(backend, rng, shape, affine, bias):
    ours = nn.LayerNorm(shape, eps=1e-3, elementwise_affine=affine, bias=bias, dtype="float64")
    for p in ours.parameters():
        p.data[...] = backend.asarray(rng.standard_normal(p.shape))
    make = lambda torch: torch.nn.LayerNorm(shape, 1e-3, affine, bias, dtype=torch.float64)  # noqa: E731
    torch, theirs = _torch_module(ours, make)
    _compare(torch, ours, theirs, [rng.standard_normal((2, 4, 3, 6))], [], ours, theirs)


MHA_CASES = {
    "self": ({}, "self", {}),
    "cross-batch-first": ({"batch_first": True}, "cross", {}),
    "masks-bool": ({}, "self", {"key_padding_mask": "bool", "attn_mask": "bool"}),
    "masks-float-3d": ({"batch_first": True}, "cross", {"key_padding_mask": "float", "attn_mask": "float3"}),
    "per-head-weights": ({}, "self", {"average_attn_weights": False, "attn_mask": "bool"}),
    "kdim-vdim": ({"kdim": 3, "vdim": 5}, "cross", {"key_padding_mask": "bool"}),
    "bias-kv-zero-attn": ({"add_bias_kv": True, "add_zero_attn": True}, "cross", {"key_padding_mask": "bool"}),
    "no-bias-no-weights": ({"bias": False}, "self", {"need_weights": False, "attn_mask": "bool"}),
    "causal-hint": ({}, "self", {"attn_mask": "causal", "is_causal": True}),
    "unbatched": ({}, "unbatched", {"attn_mask": "float"}),
}


@pytest.mark.parametrize("case", list(MHA_CASES))
def test_multihead_attention_matches_pytorch(backend, rng, case):
    kwargs, kind, call = MHA_CASES[case]
    ours = nn.MultiheadAttention(E, HEADS, dtype="float64", **kwargs)
    make = lambda torch: torch.nn.MultiheadAttention(E, HEADS, dtype=torch.float64, **kwargs)  # noqa: E731
    torch, theirs = _torch_module(ours, make)
    N, L, S, bf = 3, 4, 4 if kind != "cross" else 5, kwargs.get("batch_first", False)
    kdim, vdim = kwargs.get("kdim", E), kwargs.get("vdim", E)
    lay = (lambda n, length, d: (n, length, d) if bf else (length, n, d)) if kind != "unbatched" else None
    q = rng.standard_normal(lay(N, L, E) if lay else (L, E))
    k = rng.standard_normal(lay(N, S, kdim) if lay else (S, kdim))
    v = rng.standard_normal(lay(N, S, vdim) if lay else (S, vdim))
    kpm = rng.random((N, S)) < 0.3
    kpm[:, 0] = False
    masks = {
        "bool": {"key_padding_mask": kpm, "attn_mask": rng.random((L, S)) < 0.3},
        "float": {
            "key_padding_mask": np.where(kpm, -np.inf, rng.standard_normal((N, S))),
            "attn_mask": rng.standard_normal((L, S)),
        },
        "float3": {"attn_mask": rng.standard_normal((N * HEADS, L, S))},
        "causal": {"attn_mask": np.triu(np.ones((L, S), bool), 1)},
    }  # fmt: skip
    extra = {k_: masks[v_][k_] for k_, v_ in call.items() if isinstance(v_, str)}
    flags = {k_: v_ for k_, v_ in call.items() if not isinstance(v_, str)}

    def caller(module):
        if kind == "self":
            return lambda x, *m: module(x, x, x, **dict(zip(extra, m)), **flags)
        return lambda q, k, v, *m: module(q, k, v, **dict(zip(extra, m)), **flags)

    inputs = [q] if kind == "self" else [q, k, v]
    _compare(torch, ours, theirs, inputs, list(extra.values()), caller(ours), caller(theirs))


@pytest.mark.parametrize("mask", ["bool", "float", "causal"])
def test_scaled_dot_product_attention_matches_pytorch(backend, rng, mask):
    torch = pytest.importorskip("torch")
    q, k, v = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((2, 3, 6, 2))
    allowed = rng.random((4, 6)) < 0.6  # True: may attend (PyTorch's convention for this function)
    allowed[:, 0] = True
    masks = {"bool": allowed, "float": rng.standard_normal((3, 4, 6))}
    consts = [masks[mask]] if mask in masks else []
    causal = {"is_causal": mask == "causal"}
    theirs = torch.nn.functional.scaled_dot_product_attention
    _compare(torch, nn.Module(), torch.nn.Module(), [q, k, v], consts,
             lambda q, k, v, *m: F.scaled_dot_product_attention(q, k, v, *m, scale=0.3, **causal),
             lambda q, k, v, *m: theirs(q, k, v, *m, scale=0.3, **causal))  # fmt: skip


def _erf_gelu(x):  # a module-level activation function, as minitrain.save needs
    return F.gelu(x)


@pytest.mark.parametrize(
    ("kwargs", "masks"),
    [
        ({}, {}),
        ({"norm_first": True, "batch_first": True}, {"src_key_padding_mask": True}),
        ({"activation": "gelu", "layer_norm_eps": 1e-3}, {"src_mask": True}),
        ({"norm_first": True, "bias": False}, {"src_mask": True, "is_causal": True}),
    ],
)
def test_transformer_encoder_layer_matches_pytorch(backend, rng, kwargs, masks):
    # dropout 0 in training mode: PyTorch's autograd path, and no random masks
    kwargs = {**kwargs, "dropout": 0.0}
    ours = nn.TransformerEncoderLayer(E, HEADS, dim_feedforward=10, dtype="float64", **kwargs)
    make = lambda torch: torch.nn.TransformerEncoderLayer(E, HEADS, 10, dtype=torch.float64, **kwargs)  # noqa: E731
    torch, theirs = _torch_module(ours, make)
    shape = (3, 5, E) if kwargs.get("batch_first") else (5, 3, E)
    extra = {}
    if "src_mask" in masks:
        extra["src_mask"] = nn.generate_square_subsequent_mask(5, "float64")
    if "src_key_padding_mask" in masks:
        extra["src_key_padding_mask"] = np.array([[False] * 5, [False] * 3 + [True] * 2, [False] * 4 + [True]])
    hint = {"is_causal": True} if masks.get("is_causal") else {}
    _compare(torch, ours, theirs, [rng.standard_normal(shape)], list(extra.values()),
             lambda x, *m: ours(x, **dict(zip(extra, m)), **hint),
             lambda x, *m: theirs(x, **dict(zip(extra, m)), **hint))  # fmt: skip


# ------------------------------------------------------------------------------------------ backends and state
def _layers(be, dtype="float32"):
    return {
        "embedding": (nn.Embedding(9, E, padding_idx=0, dtype=dtype, backend=be), lambda r: r.integers(0, 9, (3, 4))),
        "layer_norm": (nn.LayerNorm(E, dtype=dtype, backend=be), lambda r: r.standard_normal((3, 4, E))),
        "attention": (
            nn.MultiheadAttention(E, HEADS, add_bias_kv=True, batch_first=True, dtype=dtype, backend=be),
            lambda r: r.standard_normal((3, 4, E)),
        ),
        "encoder": (
            nn.TransformerEncoderLayer(E, HEADS, 8, activation=_erf_gelu, dtype=dtype, backend=be),
            lambda r: r.standard_normal((4, 3, E)),
        ),
    }


def _run(layer, x):
    if isinstance(layer, nn.MultiheadAttention):
        return layer(x, x, x, key_padding_mask=np.array([[False] * 3 + [True]] * 3))[0]
    if isinstance(layer, nn.TransformerEncoderLayer):
        return layer(x, is_causal=True)
    return layer(x)


@pytest.mark.parametrize("name", ["embedding", "layer_norm", "attention", "encoder"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_backend_gives_the_reference_forward_and_gradients(backend, name, dtype):
    with mt.random.seeded(3):
        ref, make_x = _layers(get_backend("numpy"), dtype)[name]
    with mt.random.seeded(3):
        mine, _ = _layers(backend, dtype)[name]
    ref.eval()
    mine.eval()
    x = make_x(np.random.default_rng(0))
    x = x.astype(dtype) if x.dtype.kind == "f" else x
    outs = []
    for layer, be in ((ref, get_backend("numpy")), (mine, backend)):
        inp = mt.tensor(x, requires_grad=True, backend=be) if x.dtype.kind == "f" else x
        out = _run(layer, inp)
        assert out.dtype == dtype
        _backward(out)
        outs.append([out.numpy(), *(p.grad for p in layer.parameters())])
    tol = 1e-5 if dtype == "float32" else 1e-10
    for want, got in zip(*outs):
        np.testing.assert_allclose(backend.to_numpy(got), backend.to_numpy(want), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ["embedding", "layer_norm", "attention", "encoder"])
def test_copies_moves_state_dicts_and_files_give_the_same_layer(backend, name, tmp_path):
    layer, make_x = _layers(backend)[name]
    layer.eval()
    x = make_x(np.random.default_rng(1))
    x = x.astype(np.float32) if x.dtype.kind == "f" else x
    want = _run(layer, x).numpy()
    other = "numba" if backend.name == "numpy" else "numpy"
    mt.save(layer, tmp_path / "layer.safetensors")
    fresh, _ = _layers(backend)[name]
    fresh.load_state_dict(layer.state_dict())
    copies = {
        "pickle": pickle.loads(pickle.dumps(layer)),
        "deepcopy": copy.deepcopy(layer),
        "state_dict": fresh.eval(),
        "load": mt.load(tmp_path / "layer.safetensors", classes=[_erf_gelu]),
        "to": copy.deepcopy(layer).to(other),
    }
    for how, clone in copies.items():
        assert type(clone) is type(layer) and repr(clone) == repr(layer), how
        np.testing.assert_allclose(_run(clone, x).numpy(), want, rtol=1e-5, atol=1e-6, err_msg=how)
    assert copies["to"].backend.name == other


def test_reprs_read_like_pytorch():
    assert repr(nn.Embedding(10, 3, padding_idx=0)) == "Embedding(10, 3, padding_idx=0)"
    assert repr(nn.LayerNorm(4)) == "LayerNorm((4,), eps=1e-05, elementwise_affine=True)"
    head = "MultiheadAttention(embed_dim=4, num_heads=2\n  (out_proj): Linear("
    assert repr(nn.MultiheadAttention(4, 2)).startswith(head)

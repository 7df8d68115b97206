"""The sequence kernels (one call per layer over every time step) against the step-by-step path, their batch split
over threads, the Numba kernels running compiled, and the workspace that the layers reuse from step to step."""

from __future__ import annotations

import inspect
import pickle

import numpy as np
import pytest

import minitrain as mt
from minitrain import functional as F
from minitrain import nn, optim
from minitrain.testing import gradcheck

T, B, D, H = 5, 4, 3, 6
CONFIGS = {  # name: (num_layers, bidirectional, batch_first, initial states)
    "one layer": (1, False, False, False),
    "stacked, batch first, initial states": (2, False, True, True),
    "bidirectional, initial states": (1, True, False, True),
    "stacked bidirectional, batch first": (2, True, True, False),
}


def _slices(g, k, h):
    return [F.getitem(g, (slice(None), slice(j * h, (j + 1) * h))) for j in range(k)]


def _cell(lstm, x_t, h, c, w_ih, w_hh, b_ih, b_hh):
    """One time step from autograd primitives (PyTorch's equations)."""
    if lstm:
        i, f, g, o = _slices(F.add(F.linear(x_t, w_ih, b_ih), F.linear(h, w_hh, b_hh)), 4, h.shape[1])
        c = F.add(F.mul(F.sigmoid(f), c), F.mul(F.sigmoid(i), F.tanh(g)))
        return F.mul(F.sigmoid(o), F.tanh(c)), c
    (i_r, i_z, i_n), (h_r, h_z, h_n) = (
        _slices(F.linear(a, w, b), 3, h.shape[1]) for a, w, b in ((x_t, w_ih, b_ih), (h, w_hh, b_hh))
    )
    r, z = F.sigmoid(F.add(i_r, h_r)), F.sigmoid(F.add(i_z, h_z))
    n = F.tanh(F.add(i_n, F.mul(r, h_n)))
    return F.add(n, F.mul(z, F.sub(h, n))), None


def stepwise(mod, x, hx=None):
    """``mod(x, hx)`` one time step at a time from autograd primitives, with ``mod``'s parameters."""
    lstm, dirs, hs = isinstance(mod, nn.LSTM), 2 if mod.bidirectional else 1, mod.hidden_size
    states = (hx if lstm else (hx,)) if hx is not None else None
    x = F.transpose(x, 1, 0, 2) if mod.batch_first else x
    zero = mt.tensor(np.zeros((x.shape[1], hs), dtype=x.dtype))
    finals = ([], [])
    for layer in range(mod.num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            h, c = (zero, zero) if states is None else (F.getitem(states[0], k), F.getitem(states[-1], k))
            seq = []
            for t in reversed(range(x.shape[0])) if d else range(x.shape[0]):
                h, c = _cell(lstm, F.getitem(x, t), h, c, *mod._layer(layer, "_reverse" if d else ""))
                seq.append(h)
            outs.append(F.stack(seq[::-1] if d else seq))
            finals[0].append(h)
            finals[1].append(c)
        x = outs[0] if dirs == 1 else F.concatenate(outs, axis=-1)
    x = F.transpose(x, 1, 0, 2) if mod.batch_first else x
    return x, F.stack(finals[0]), (F.stack(finals[1]) if lstm else None)


def _pair(backend, kind, config, dtype="float64"):
    """The same layer twice (equal parameters) and its input and initial states as leaves that require grad."""
    layers, bidirectional, batch_first, given = CONFIGS[config]
    kw = {"num_layers": layers, "bidirectional": bidirectional, "batch_first": batch_first, "dtype": dtype}
    cls = nn.LSTM if kind == "LSTM" else nn.GRU
    mt.manual_seed(3)
    mods = [cls(D, H, backend=backend, **kw) for _ in range(2)]
    mods[1].load_state_dict(mods[0].state_dict())
    rng = np.random.default_rng(5)
    shape = (B, T, D) if batch_first else (T, B, D)
    x = rng.standard_normal(shape).astype(dtype)
    states = [rng.standard_normal((layers * (2 if bidirectional else 1), B, H)).astype(dtype) for _ in range(2)]
    return mods, x, (states if given else None)


def _run(mod, x, states, sequence):
    xs = mt.tensor(x, requires_grad=True, backend=mod._backend)
    lstm = isinstance(mod, nn.LSTM)
    given = None if states is None else states[: 2 if lstm else 1]
    hs = None if given is None else [mt.tensor(s, requires_grad=True, backend=mod._backend) for s in given]
    hx = None if hs is None else (tuple(hs) if lstm else hs[0])
    if sequence:
        out, hidden = mod(xs, hx)
        h_n, c_n = hidden if lstm else (hidden, None)
    else:
        out, h_n, c_n = stepwise(mod, xs, hx)
    return xs, hs, [t for t in (out, h_n, c_n) if t is not None]


def _weights(rng, outputs):
    return [mt.tensor(rng.standard_normal(o.shape), backend=o.backend) for o in outputs]


@pytest.fixture(params=["plain", "split"])
def split(request, monkeypatch):
    """Numba: the batch in one call, or split over two threads whatever its size (other backends: one run)."""
    if request.param == "split":
        from minitrain_numba import _recurrent, _split

        monkeypatch.setattr(_recurrent, "SPLIT_MIN_MACS", 0)
        monkeypatch.setattr(_split, "parts", lambda n, macs: min(n, 2))
    return request.param


@pytest.fixture
def numba_backend():
    info = {i.name: i for i in mt.backend.list_backends()}.get("numba")
    if info is None or not info.available:
        pytest.skip("the numba backend is not available")
    return mt.get_backend("numba")


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_sequence_path_equals_the_step_by_step_path(backend, kind, config):
    mods, x, states = _pair(backend, kind, config)
    runs = [_run(m, x, states, sequence) for m, sequence in zip(mods, (True, False))]
    weights = _weights(np.random.default_rng(0), runs[0][2])
    for _, _, outs in runs:
        F.sum(F.concatenate([F.reshape(F.mul(o, w), (-1,)) for o, w in zip(outs, weights)])).backward()
    (xa, ha, outs_a), (xb, hb, outs_b) = runs
    for a, b in zip(outs_a, outs_b):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-13)
    for a, b in zip([xa, *(ha or [])], [xb, *(hb or [])]):
        np.testing.assert_allclose(backend.to_numpy(a.grad), backend.to_numpy(b.grad), rtol=1e-10, atol=1e-12)
    for (name, pa), pb in zip(mods[0].named_parameters(), mods[1].parameters()):
        np.testing.assert_allclose(
            backend.to_numpy(pa.grad), backend.to_numpy(pb.grad), rtol=1e-10, atol=1e-12, err_msg=name
        )


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_numba_sequence_kernels_equal_the_reference_in_every_split(numba_backend, split, kind):
    with mt.use_backend(numba_backend):
        test_sequence_path_equals_the_step_by_step_path(numba_backend, kind, "stacked, batch first, initial states")


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_a_short_training_run_follows_the_step_by_step_path(backend, kind):
    mods, x, _ = _pair(backend, kind, "stacked bidirectional, batch first")
    head = [nn.Linear(2 * H, 3, dtype="float64", backend=backend) for _ in range(2)]
    head[1].load_state_dict(head[0].state_dict())
    y = backend.asarray(np.random.default_rng(1).integers(0, 3, B))
    opts = [optim.Adam([*m.parameters(), *h.parameters()], lr=0.05) for m, h in zip(mods, head)]
    for step in range(4):
        for mod, lin, opt, sequence in zip(mods, head, opts, (True, False)):
            out = _run(mod, x[:, step:] if step else x, None, sequence)[2][0]
            opt.zero_grad()
            F.cross_entropy(lin(F.getitem(out, (slice(None), -1))), y).backward()
            opt.step()
    for (name, pa), pb in zip(mods[0].named_parameters(), mods[1].parameters()):
        np.testing.assert_allclose(
            backend.to_numpy(pa.data), backend.to_numpy(pb.data), rtol=1e-9, atol=1e-11, err_msg=name
        )
    assert not np.allclose(
        backend.to_numpy(mods[0].weight_hh_l1.data), _pair(backend, kind, "one layer")[0][0].weight_hh_l0.data
    )


@pytest.mark.parametrize("op", ["lstm", "gru"])
def test_gradients_of_the_split_kernels_match_finite_differences(numba_backend, split, op):
    rng = np.random.default_rng(7)
    gates = 4 if op == "lstm" else 3
    x, h0, c0 = rng.standard_normal((4, 5, 3)), rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    weights = [rng.uniform(-0.8, 0.8, s) for s in ((gates * 2, 3), (gates * 2, 2), (gates * 2,), (gates * 2,))]
    states = (h0, c0) if op == "lstm" else (h0,)

    def fn(*a):
        outs = getattr(F, op)(*a)
        return F.concatenate([F.reshape(o, (-1,)) for o in outs])

    assert gradcheck(fn, x, *states, *weights, backend=numba_backend)


@pytest.mark.parametrize("op", ["lstm_sequence", "lstm_sequence_backward", "gru_sequence", "gru_sequence_backward"])
def test_numba_runs_its_compiled_sequence_kernels(numba_backend, op):
    """The override itself (not the reference it may hand over to) takes the layers' float32 arguments."""
    rng = np.random.default_rng(0)
    g = 4 if op.startswith("lstm") else 3
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    fwd = {
        "lstm_sequence": (r(T, B, g * H), r(g * H, H), r(g * H), None, None),
        "gru_sequence": (r(T, B, g * H), r(g * H, H), r(g * H), r(g * H), None),
    }
    override = inspect.unwrap(getattr(type(numba_backend), op))
    if op in fwd:
        result = override(numba_backend, *fwd[op])
    elif op == "lstm_sequence_backward":
        _, c, acts = numba_backend.lstm_sequence(*fwd["lstm_sequence"])
        result = override(numba_backend, r(T, B, H), None, acts, fwd["lstm_sequence"][1], None, c, need_h0=False)
    else:
        h, acts, gh_n = numba_backend.gru_sequence(*fwd["gru_sequence"])
        result = override(numba_backend, r(T, B, H), acts, gh_n, fwd["gru_sequence"][1], h)
    assert result is not NotImplemented


# ------------------------------------------------------------------------------------------ the workspace
def _classifier(backend, cls):
    mt.manual_seed(0)
    return nn.Sequential(cls(D, H, batch_first=True), nn.LastStep(), nn.Linear(H, 2), backend=backend)


def _train_step(net, opt, x, y):
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    opt.step()


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_training_steps_reuse_the_layers_arrays(backend, rng, cls):
    net = _classifier(backend, cls)
    opt, x, y = optim.Adam(net, lr=0.01), rng.standard_normal((B, T, D)), backend.asarray(np.array([0, 1, 1, 0]))
    _train_step(net, opt, x, y)
    kept = {k: id(a) for ws in net[0]._workspaces.values() for k, a in ws.items()}
    assert len(kept) >= 5  # projections, states, their gradients
    for _ in range(2):
        _train_step(net, opt, x, y)
    assert {k: id(a) for ws in net[0]._workspaces.values() for k, a in ws.items()} == kept


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_outputs_and_graphs_still_held_are_not_overwritten(backend, rng, cls):
    layer = cls(D, H, backend=backend, dtype="float64")
    x1, x2 = rng.standard_normal((T, B, D)), rng.standard_normal((T, B, D))
    out1, _ = layer(x1)
    kept = out1.numpy().copy()
    with mt.no_grad():
        layer(x2)
    out2, _ = layer(x2)
    np.testing.assert_array_equal(out1.numpy(), kept)
    F.sum(out1).backward(retain_graph=True)
    first = backend.to_numpy(layer.weight_hh_l0.grad).copy()
    F.sum(out2).backward()  # its own arrays: the first graph's are still held
    layer.zero_grad()
    F.sum(out1).backward()
    np.testing.assert_allclose(backend.to_numpy(layer.weight_hh_l0.grad), first, rtol=1e-12)


def test_workspaces_are_not_pickled(rng):
    layer = nn.GRU(D, H)
    layer(rng.standard_normal((T, B, D)).astype(np.float32))
    assert layer._workspaces
    copy = pickle.loads(pickle.dumps(layer))
    assert "_workspaces" not in copy.__dict__
    np.testing.assert_array_equal(
        copy(np.ones((T, B, D), np.float32))[0].numpy(), layer(np.ones((T, B, D), np.float32))[0].numpy()
    )


def test_a_workspace_hands_out_an_array_only_when_nothing_else_holds_it():
    from minitrain.functional.recurrent_ops import _buffer

    ws, be = {}, mt.get_backend("numpy")
    take = lambda shape=(3, 2): _buffer(ws, be, "x", shape, np.float32)  # noqa: E731
    first = take()
    view = first[1:]
    del first
    second = take()
    assert second is not view.base  # the view holds the first array
    kept = id(second)
    del second
    assert id(take()) == kept  # held by the workspace alone: handed out again
    third = take()
    assert take() is not third
    assert take((2, 2)).shape == (2, 2)


def test_the_batch_split_is_off_by_default_and_set_by_the_environment(numba_backend, monkeypatch):
    from minitrain_numba import _recurrent

    monkeypatch.delenv("MINITRAIN_NUMBA_SPLIT_MACS", raising=False)
    assert _recurrent._split_min_macs() is None
    monkeypatch.setenv("MINITRAIN_NUMBA_SPLIT_MACS", "4194304")
    assert _recurrent._split_min_macs() == 4194304
    monkeypatch.setenv("MINITRAIN_NUMBA_SPLIT_MACS", "lots")
    with pytest.raises(ValueError, match="MINITRAIN_NUMBA_SPLIT_MACS must be a whole number"):
        _recurrent._split_min_macs()


class _StepLoop(mt.backend.NumpyBackend):
    """The reference with step kernels of its own: ``lstm_sequence`` runs its per-step loop over them."""

    def lstm_step(self, gates, c_prev, *, out=None, out_c=None):
        return super().lstm_step(gates, c_prev, out=out, out_c=out_c)

    def lstm_step_backward(self, grad_h, grad_c, acts, c_prev, c, *, out=None):
        return super().lstm_step_backward(grad_h, grad_c, acts, c_prev, c, out=out)


@pytest.mark.parametrize("given", [False, True])
def test_reference_lstm_sequence_whole_rows_and_chunks_match_the_step_loop(given):
    # 64 x 512 gates per step: the backward runs chunks of 4 steps, so 10 steps make 3 chunks, the last one short
    rng = np.random.default_rng(3)
    steps, n, hs = 10, 64, 128
    fast, loop = mt.get_backend("numpy"), _StepLoop()
    gates = rng.normal(size=(steps, n, 4 * hs)) * 2
    w_hh, bias = rng.normal(size=(4 * hs, hs)) * 0.2, rng.normal(size=4 * hs)
    h0, c0, grad_c = (rng.normal(size=(n, hs)) if given else None for _ in range(3))
    grad_h = rng.normal(size=(steps, n, hs))
    outs = []
    for be in (fast, loop):
        h, c, acts = be.lstm_sequence(gates.copy(), w_hh, bias, h0, c0)
        back = be.lstm_sequence_backward(grad_h, grad_c, acts.copy(), w_hh, c0, c, need_h0=given)
        in_place = be.lstm_sequence_backward(grad_h, grad_c, acts, w_hh, c0, c, out=acts, need_h0=True)
        outs.append((h, c, *back, *in_place))
    for got, want in zip(*outs):
        assert (got is None) == (want is None)
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)

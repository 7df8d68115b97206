"""The backend registry: discovery, status reporting, selection, per-thread context, generators, plugins."""

from __future__ import annotations

import contextvars
import pickle
import threading
from contextlib import contextmanager

import numpy as np
import pytest

import minitrain as mt
from minitrain.backend import (
    Backend,
    NumpyBackend,
    get_backend,
    list_backends,
    register_backend,
    registry,
    set_backend,
    unregister_backend,
    use_backend,
)
from minitrain.backend.context import current
from minitrain.testing import check_backend


class AltBackend(NumpyBackend):
    """A second, available backend for selection tests."""

    name = "alt"


class UnavailableBackend(NumpyBackend):
    """A backend that reports it cannot run here."""

    name = "widget"

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        return False, "no widget device found"


class ThirdPartyBackend(NumpyBackend):
    """A plugin that overrides one kernel correctly: same signature, delegating to super()."""

    name = "thirdparty"

    def mse(self, pred, target):
        return super().mse(pred, target)


class ChangedSignatureBackend(NumpyBackend):
    """A plugin that overrides a kernel with a changed signature."""

    name = "changedsig"

    def mse(self, pred, target, scale=1.0):
        return super().mse(pred, target)


class ExtraMethodBackend(NumpyBackend):
    """A plugin that adds a public method."""

    name = "extramethod"

    def fused_everything(self):
        return None


class WrongKernelBackend(NumpyBackend):
    """A plugin whose kernel computes the wrong thing."""

    name = "wrongkernel"

    def mse(self, pred, target):
        loss, grad = super().mse(pred, target)
        return loss, grad * 0.5


@contextmanager
def registered(name, target):
    """Register a backend for the duration of a block; always unregister it."""
    register_backend(name, target)
    try:
        yield
    finally:
        unregister_backend(name)


def in_fresh_context(fn, *args):
    """Run ``fn`` in an empty context: no current backend, whatever the test runner set."""
    return contextvars.Context().run(fn, *args)


def info(name):
    return next(i for i in list_backends() if i.name == name)


@pytest.fixture(autouse=True)
def _no_env_backend(monkeypatch):
    monkeypatch.delenv("MINITRAIN_BACKEND", raising=False)


# ------------------------------------------------------------------------------------------ listing
def test_list_backends_includes_numpy_available():
    numpy_info = info("numpy")
    assert numpy_info.available
    assert numpy_info.reason == ""


def test_list_backends_lists_numpy_first():
    assert list_backends()[0].name == "numpy"


def test_unknown_backend_error_lists_every_backend_and_status():
    with registered("widget", UnavailableBackend), pytest.raises(ValueError) as err:
        get_backend("nope")
    msg = str(err.value)
    assert "'nope'" in msg
    for i in list_backends():
        assert i.name in msg
    assert "numpy: available" in msg
    assert "widget: unavailable (no widget device found)" in msg


def test_backend_whose_import_fails_is_listed_unavailable_with_reason():
    with registered("broken", "minitrain_no_such_module:Backend"):
        broken = info("broken")
        assert not broken.available
        assert "ModuleNotFoundError" in broken.reason
        assert "minitrain_no_such_module" in broken.reason


def test_backend_whose_import_fails_raises_with_reason():
    with registered("broken", "minitrain_no_such_module:Backend"), pytest.raises(ValueError) as err:
        get_backend("broken")
    assert "backend 'broken' is not available" in str(err.value)
    assert "minitrain_no_such_module" in str(err.value)


def test_target_that_is_not_a_backend_is_unavailable():
    with registered("notabackend", "collections:OrderedDict"):
        assert "not a minitrain Backend subclass" in info("notabackend").reason


def test_backend_reporting_unavailable_is_listed_with_its_reason():
    with registered("widget", UnavailableBackend):
        assert info("widget") == registry.BackendInfo("widget", False, "no widget device found")


def test_backend_reporting_unavailable_raises_with_its_reason():
    with registered("widget", UnavailableBackend), pytest.raises(ValueError, match="no widget device found"):
        get_backend("widget")


def test_unregister_backend_forgets_it():
    with registered("alt", AltBackend):
        assert get_backend("alt").name == "alt"
    assert "alt" not in [i.name for i in list_backends()]
    with pytest.raises(ValueError, match="unknown backend 'alt'"):
        get_backend("alt")


def test_register_backend_rejects_names_with_a_colon():
    try:
        with pytest.raises(ValueError, match="must not contain ':'"):
            register_backend("bad:name", "minitrain.backend.numpy:NumpyBackend")
    finally:
        unregister_backend("bad:name")


def test_get_backend_rejects_non_names():
    with pytest.raises(TypeError, match="int"):
        get_backend(3)


def test_get_backend_returns_one_instance_per_name():
    assert get_backend("numpy") is get_backend("numpy")


def test_get_backend_passes_an_instance_through():
    be = NumpyBackend()
    assert get_backend(be) is be


# ------------------------------------------------------------------------------------------ selection
def test_use_backend_sets_and_restores():
    def body():
        with registered("alt", AltBackend):
            before = current()
            with use_backend("alt") as be:
                assert be.name == "alt"
                assert get_backend() is be
            assert current() is before

    in_fresh_context(body)


def test_use_backend_nests():
    def body():
        with registered("alt", AltBackend), use_backend("numpy"):
            with use_backend("alt"):
                assert get_backend().name == "alt"
                with use_backend("numpy"):
                    assert get_backend().name == "numpy"
                assert get_backend().name == "alt"
            assert get_backend().name == "numpy"

    in_fresh_context(body)


def test_use_backend_restores_after_an_exception():
    def body():
        with registered("alt", AltBackend):
            with pytest.raises(KeyError), use_backend("alt"):
                raise KeyError("boom")
            assert current() is None

    in_fresh_context(body)


def test_use_backend_is_invisible_to_a_thread_started_inside_the_block():
    seen = []
    with registered("alt", AltBackend), use_backend("alt"):
        worker = threading.Thread(target=lambda: seen.append(get_backend().name))
        worker.start()
        worker.join()
        assert get_backend().name == "alt"
    assert seen == [get_backend("auto").name]


def test_threads_use_their_own_backends_concurrently():
    both_inside = threading.Barrier(2, timeout=10)
    seen = {}

    def work(name):
        with use_backend(name):
            both_inside.wait()  # each thread is inside its block while the other looks
            seen[name] = get_backend().name
            both_inside.wait()

    with registered("alt", AltBackend):
        threads = [threading.Thread(target=work, args=(name,)) for name in ("numpy", "alt")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert seen == {"numpy": "numpy", "alt": "alt"}


def test_set_backend_makes_it_current():
    def body():
        be = set_backend("alt")
        assert be.name == "alt"
        assert get_backend() is be

    with registered("alt", AltBackend):
        in_fresh_context(body)


def test_set_backend_does_not_leak_out_of_its_context():
    with registered("alt", AltBackend):
        in_fresh_context(set_backend, "alt")
        assert in_fresh_context(get_backend).name == get_backend("auto").name


def test_env_var_is_honoured_when_nothing_is_set(monkeypatch):
    monkeypatch.setenv("MINITRAIN_BACKEND", "alt")
    with registered("alt", AltBackend):
        assert in_fresh_context(get_backend).name == "alt"


def test_use_backend_takes_precedence_over_env_var(monkeypatch):
    monkeypatch.setenv("MINITRAIN_BACKEND", "alt")

    def body():
        with use_backend("numpy"):
            return get_backend().name

    with registered("alt", AltBackend):
        assert in_fresh_context(body) == "numpy"


def test_env_var_naming_an_unknown_backend_raises(monkeypatch):
    monkeypatch.setenv("MINITRAIN_BACKEND", "nope")
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        in_fresh_context(get_backend)


def test_auto_resolves_to_the_first_available_in_preference_order():
    be = get_backend("auto")
    available = [i.name for i in list_backends() if i.available]
    assert be.name == next(n for n in registry.AUTO_ORDER if n in available)


def test_no_selection_means_auto():
    assert in_fresh_context(get_backend) is get_backend("auto")


def test_device_index_parses():
    be = get_backend("numpy:0")
    assert be.name == "numpy"
    assert be.device_index == 0


def test_default_device_is_device_zero():
    assert get_backend("numpy:0") is get_backend("numpy")


def test_backend_unpickles_to_the_registry_instance():
    be = get_backend("numpy")
    assert pickle.loads(pickle.dumps(be)) is be


def test_device_index_must_be_an_integer():
    with pytest.raises(ValueError, match="device index"):
        get_backend("numpy:x")


# ------------------------------------------------------------------------------------------ generators
def test_backends_hold_no_random_state_only_make_generators():
    be = get_backend("numpy")
    assert not hasattr(be, "rng") and not hasattr(be, "seed")
    a, b = be.generator(7), be.generator(7)
    np.testing.assert_array_equal(a.random(5), b.random(5))
    assert not np.array_equal(be.generator(8).random(5), be.generator(7).random(5))


@pytest.fixture
def _restore_default_stream(monkeypatch):
    monkeypatch.setitem(mt.random._default, "stream", mt.random._default["stream"])


@pytest.mark.usefixtures("_restore_default_stream")
def test_manual_seed_makes_new_modules_reproducible():
    mt.manual_seed(7)
    first = [mt.nn.Linear(4, 3, backend="numpy").weight.numpy(), mt.nn.Dropout(0.5).generator.random(3)]
    mt.manual_seed(7)
    again = [mt.nn.Linear(4, 3, backend="numpy").weight.numpy(), mt.nn.Dropout(0.5).generator.random(3)]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    mt.manual_seed(8)
    assert not np.array_equal(mt.nn.Linear(4, 3, backend="numpy").weight.numpy(), first[0])


@pytest.mark.usefixtures("_restore_default_stream")
def test_manual_seed_makes_functional_dropout_reproducible():
    x = mt.tensor(np.ones((4, 50)))
    mt.manual_seed(3)
    a = mt.functional.dropout(x, 0.5).numpy()
    mt.manual_seed(3)
    np.testing.assert_array_equal(mt.functional.dropout(x, 0.5).numpy(), a)
    gen = get_backend(x.backend).generator(11)
    b = mt.functional.dropout(x, 0.5, generator=gen).numpy()
    np.testing.assert_array_equal(mt.functional.dropout(x, 0.5, generator=x.backend.generator(11)).numpy(), b)


@pytest.mark.usefixtures("_restore_default_stream")
def test_a_seeded_block_is_its_own_stream_and_leaves_the_default_alone():
    mt.manual_seed(5)
    expected = mt.nn.Linear(4, 3, backend="numpy").weight.numpy()
    mt.manual_seed(5)
    with mt.random.seeded(123):
        inside = mt.nn.Linear(4, 3, backend="numpy").weight.numpy()
    np.testing.assert_array_equal(mt.nn.Linear(4, 3, backend="numpy").weight.numpy(), expected)
    with mt.random.seeded(123):
        np.testing.assert_array_equal(mt.nn.Linear(4, 3, backend="numpy").weight.numpy(), inside)


def test_a_seeded_block_is_invisible_to_other_threads():
    seen = {}

    def build(name, seed):
        with mt.random.seeded(seed):
            barrier.wait()
            seen[name] = [mt.nn.Linear(8, 8, backend="numpy").weight.numpy() for _ in range(20)]

    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=build, args=(n, 1)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with mt.random.seeded(1):
        want = [mt.nn.Linear(8, 8, backend="numpy").weight.numpy() for _ in range(20)]
    for name in ("a", "b"):
        for got, ref in zip(seen[name], want, strict=True):
            np.testing.assert_array_equal(got, ref)


# ------------------------------------------------------------------------------------------ plugins
def test_base_class_declares_every_kernel():
    for name in Backend.kernels:
        assert callable(getattr(Backend, name))


def test_third_party_backend_with_a_faithful_override_passes_check_backend():
    with registered("thirdparty", ThirdPartyBackend):
        be = get_backend("thirdparty")
        assert type(be) is ThirdPartyBackend
        check_backend(be)


def test_check_backend_accepts_a_registered_name():
    with registered("thirdparty", ThirdPartyBackend):
        check_backend("thirdparty", dtypes=("float64",))


def test_override_with_changed_signature_fails_check_backend_naming_the_kernel():
    with registered("changedsig", ChangedSignatureBackend), pytest.raises(AssertionError) as err:
        check_backend("changedsig", dtypes=("float64",))
    msg = str(err.value)
    assert "[signatures]" in msg
    assert "kernel 'mse'" in msg
    assert "scale=1.0" in msg


def test_added_public_method_fails_check_backend():
    with pytest.raises(AssertionError, match="adds public methods fused_everything"):
        check_backend(ExtraMethodBackend(), dtypes=("float64",))


def test_wrong_kernel_fails_check_backend_with_the_parity_case_and_values():
    with pytest.raises(AssertionError) as err:
        check_backend(WrongKernelBackend(), dtypes=("float32",))
    msg = str(err.value)
    assert "failed 1 of" in msg
    assert "[parity/mse[float32]]" in msg
    assert "grad:" in msg and "got" in msg and "expected" in msg

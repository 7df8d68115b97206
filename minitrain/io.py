"""Saving and loading without pickle: ``save(obj, path)`` / ``load(path)``.

One safetensors file holds every array of the object, and its metadata holds the rest as JSON: the structure
of modules (each layer's class and settings), optimizers (class, parameter groups, state), fitted estimators
(their fitted state, as their pickles hold it), callbacks, histories, random generators, and plain containers
of these (dicts, lists, tuples). Loading builds the objects from minitrain's and scikit-learn's own classes by
name and runs no code from the file; a class of your own is loaded only when passed in ``classes``. Objects
shared in the saved graph stay shared (a model and the optimizer over its parameters). A digest over the
metadata and every array is checked on loading, so a truncated or edited file gives an error, never a
half-loaded object.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pathlib
import struct
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from . import nn
from ._io_writer import _path_of, _Writer
from .autograd import Tensor
from .backend import Backend, get_backend, list_backends
from .nn.flat import Parameter
from .optim import Optimizer

__all__ = ["FORMAT_VERSION", "Unresolved", "load", "save"]

#: The version of the file format this code writes; it reads this version only.
FORMAT_VERSION = 1
_KEY = "minitrain"
_TRUSTED = ("minitrain.", "minitrain_", "sklearn.", "numpy.", "scipy.")


class Unresolved:
    """Stands for a function or class of the user's that a file names but ``load`` was not given (``classes``).

    Calling it raises an error that says how to resolve it; the rest of the loaded object works.

    Parameters
    ----------
    path : str
        ``"module:qualname"`` of the missing function or class.

    Examples
    --------
    >>> import os, tempfile, warnings
    >>> import minitrain as mt
    >>> def double(x):
    ...     return 2 * x
    >>> double.__module__ = "my_project.features"  # as if imported from a package of one's own
    >>> path = os.path.join(tempfile.mkdtemp(), "config.safetensors")
    >>> mt.save({"transform": double, "factor": 3}, path)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # load warns about the function it was not given
    ...     loaded = mt.load(path)
    >>> loaded
    {'transform': Unresolved('my_project.features:double'), 'factor': 3}
    >>> loaded["transform"](1)
    Traceback (most recent call last):
    TypeError: my_project.features:double was not loaded: pass it to minitrain.load(..., classes=[...]) to use it
    >>> mt.load(path, classes=[double])["transform"](21)
    42
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self.path} was not loaded: pass it to minitrain.load(..., classes=[...]) to use it")

    def __repr__(self) -> str:
        return f"Unresolved({self.path!r})"


def save(obj: Any, path: str | os.PathLike) -> None:
    """Save a module, optimizer, fitted estimator, callback, history, array, or a dict / list / tuple of these.

    Parameters
    ----------
    obj : object
        What to save; arrays of any backend are saved as NumPy arrays (dtypes kept).
    path : str or path-like
        The file to write (conventionally ``*.safetensors``); written whole or not at all.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import minitrain as mt
    >>> net = mt.nn.Sequential(mt.nn.Linear(3, 4), mt.nn.ReLU(), mt.nn.Linear(4, 2))
    >>> path = os.path.join(tempfile.mkdtemp(), "net.safetensors")
    >>> mt.save(net, path)
    >>> same = mt.load(path)
    >>> x = np.ones((2, 3), np.float32)
    >>> bool((same(x).numpy() == net(x).numpy()).all())
    True
    """
    from safetensors.numpy import save as to_bytes

    writer = _Writer()
    tree = writer.encode(obj, "obj")
    meta = {"format": "minitrain", "version": FORMAT_VERSION, "root": tree}
    text = json.dumps(meta, separators=(",", ":"))
    digest = _digest(text, writer.arrays)
    data = to_bytes(writer.arrays, metadata={_KEY: text, "digest": digest})
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def load(path: str | os.PathLike, *, backend: Any = None, classes: Iterable[Any] = ()) -> Any:
    """Load what :func:`save` wrote.

    Parameters
    ----------
    path : str or path-like
    backend : str or Backend, optional
        Where the loaded modules and estimators compute; by default the backend they were saved from when it
        can run here, else NumPy.
    classes : iterable of classes or functions, optional
        Your own classes (and functions, e.g. a ``module=`` builder) that the file names; minitrain's and
        scikit-learn's are found by name. A function the file names but ``classes`` lacks loads as an
        :class:`Unresolved` placeholder, with a warning.

    Raises
    ------
    ValueError
        If the file is not a minitrain file, is truncated, was edited after it was written, or has another
        format version; TypeError if it names a class that is neither minitrain's, scikit-learn's nor given.

    Examples
    --------
    >>> import os, tempfile
    >>> import minitrain as mt
    >>> net = mt.nn.Linear(3, 2)
    >>> opt = mt.optim.Adam(net, lr=0.01)
    >>> path = os.path.join(tempfile.mkdtemp(), "run.safetensors")
    >>> mt.save({"model": net, "optimizer": opt, "epoch": 3}, path)
    >>> run = mt.load(path, backend="numpy")
    >>> run["epoch"], type(run["optimizer"]).__name__, run["model"].backend.name
    (3, 'Adam', 'numpy')
    >>> run["optimizer"].param_groups[0]["params"][0] is run["model"].weight  # still shared
    True
    """
    with open(path, "rb") as f:
        data = f.read()
    meta_text, digest = _header(data, path)
    try:
        meta = json.loads(meta_text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: the minitrain metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != "minitrain":
        raise ValueError(f"{path}: not a file written by minitrain.save")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format version {meta.get('version')!r}; this minitrain reads version {FORMAT_VERSION} only"
        )
    from safetensors.numpy import load as from_bytes

    try:
        arrays = from_bytes(data)
    except Exception as exc:  # safetensors' own checks: offsets, sizes, dtypes
        raise ValueError(f"{path}: the arrays are damaged ({exc})") from None
    if _digest(meta_text, arrays) != digest:
        raise ValueError(f"{path}: the file was changed after it was written (its digest does not match)")
    reader = _Reader(arrays, {_path_of(c): c for c in classes}, get_backend(backend) if backend else None)
    obj = reader.decode(meta["root"])
    reader.place(obj)
    return obj


# ---------------------------------------------------------------------------------------- the file
def _header(data: bytes, path: Any) -> tuple[str, str]:
    """The minitrain metadata and digest from a safetensors header (ValueError for anything else)."""
    if len(data) < 8:
        raise ValueError(f"{path}: too short to be a minitrain file ({len(data)} bytes)")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise ValueError(f"{path}: truncated (its header says {size} bytes, {len(data) - 8} follow)")
    try:
        header = json.loads(data[8 : 8 + size])
        meta = header["__metadata__"]
        return meta[_KEY], meta["digest"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{path}: not a file written by minitrain.save (no minitrain metadata)") from None


def _digest(meta_text: str, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(meta_text.encode())
    for name in sorted(arrays):
        a = arrays[name]
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------- decoding
class _Reader:
    """Builds objects back from the JSON nodes and the arrays (classes looked up by name, never imported from
    anywhere but minitrain, scikit-learn, NumPy, SciPy, or the caller's ``classes``)."""

    def __init__(self, arrays: dict[str, np.ndarray], given: dict[str, Any], backend: Backend | None) -> None:
        self.arrays, self.given, self.backend = arrays, given, backend
        self.objs: dict[int, Any] = {}
        self.module_specs: dict[int, str | None] = {}
        self.optimizers: list[tuple[Optimizer, list, dict, dict]] = []
        self.unresolved: list[str] = []

    def decode(self, node: Any) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.decode(x) for x in node]
        tag = node.get("$t") if isinstance(node, dict) else None
        method = getattr(self, f"_{tag}", None)
        if method is None:
            raise ValueError(f"the file holds an unknown kind of value {tag!r}")
        return method(node)

    def _ref(self, node: dict) -> Any:
        return self.objs[node["id"]]

    def _tuple(self, node: dict) -> tuple:
        return tuple(self.decode(x) for x in node["v"])

    def _dict(self, node: dict) -> dict:
        return {k: self.decode(x) for k, x in node["v"].items()}

    def _items(self, node: dict) -> dict:
        return {self._key(self.decode(k)): self.decode(x) for k, x in node["v"]}

    @staticmethod
    def _key(k: Any) -> Any:
        return tuple(k) if isinstance(k, list) else k

    def _set(self, node: dict) -> set:
        return {self.decode(x) for x in node["v"]}

    def _frozenset(self, node: dict) -> frozenset:
        return frozenset(self.decode(x) for x in node["v"])

    def _scalar(self, node: dict) -> Any:
        return np.dtype(node["dtype"]).type(node["v"])

    def _dtype(self, node: dict) -> np.dtype:
        return np.dtype(node["v"])

    def _path(self, node: dict) -> pathlib.Path:
        return pathlib.Path(node["v"])

    def _slice(self, node: dict) -> slice:
        return slice(*(self.decode(x) for x in node["v"]))

    def _backend(self, node: dict) -> Backend:
        return get_backend("numpy")  # everything is built on NumPy first; place() moves it

    def _array(self, node: dict) -> np.ndarray:
        a = np.array(self.arrays[node["name"]])  # a writable copy that owns its memory
        a = a.T if node.get("T") else a
        self.objs[node["id"]] = a
        return a

    def _objarray(self, node: dict) -> np.ndarray:
        values = self.decode(node["v"])
        out = np.empty(tuple(node["shape"]), dtype=np.dtype(node["dtype"]))
        out[...] = np.array(values, dtype=out.dtype) if out.dtype != object else _object_array(values, out.shape)
        return out

    def _generator(self, node: dict) -> np.random.Generator:
        state = self.decode(node["state"])
        bitgen = getattr(np.random, state["bit_generator"])()
        bitgen.state = state
        return np.random.Generator(bitgen)

    def _randomstate(self, node: dict) -> np.random.RandomState:
        rs = np.random.RandomState()
        rs.set_state(self.decode(node["state"]))
        return rs

    def _parameter(self, node: dict) -> Parameter:
        p = Parameter(self.decode(node["data"]), backend="numpy")
        p.requires_grad = bool(node["requires_grad"])
        self.objs[node["id"]] = p
        return p

    def _tensor(self, node: dict) -> Tensor:
        t = Tensor(self.decode(node["data"]), requires_grad=bool(node["requires_grad"]), backend="numpy")
        self.objs[node["id"]] = t
        return t

    def _class(self, node: dict) -> Any:
        return self._lookup(node["path"])

    def _function(self, node: dict) -> Any:
        try:
            return self._lookup(node["path"])
        except TypeError:
            self.unresolved.append(node["path"])
            return Unresolved(node["path"])

    def _lookup(self, path: str) -> Any:
        if path in self.given:
            return self.given[path]
        by_name = [v for k, v in self.given.items() if k.split(":")[1] == path.split(":")[-1]]
        if len(by_name) == 1:
            return by_name[0]
        module, _, qualname = path.partition(":")
        if not (module.startswith(_TRUSTED) or f"{module}." in _TRUSTED):  # numpy:float64 is numpy's too
            raise TypeError(f"the file names {path}, which is not minitrain's: pass it as minitrain.load(..., "
                            "classes=[...]) to load it (loading a file imports no code of its own)")  # fmt: skip
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj

    def _optimizer(self, node: dict) -> Optimizer:
        cls = self._lookup(node["class"])
        if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
            raise ValueError(f"{node['class']} is not an optimizer")
        opt = cls.__new__(cls)  # built in place() once its parameters are where they compute
        self.objs[node["id"]] = opt
        state = self.decode(node["state"])
        groups = [
            {**{k: v for k, v in hyper.items() if k != "params"}, "params": [self.decode(p) for p in params]}
            for params, hyper in zip(node["groups"], state["param_groups"], strict=True)
        ]
        self.optimizers.append((opt, groups, state, node["clip"]))
        return opt

    def _object(self, node: dict) -> Any:
        cls = self._lookup(node["class"])
        if not isinstance(cls, type):
            raise ValueError(f"{node['class']} is not a class")
        obj = cls.__new__(cls)
        self.objs[node["id"]] = obj
        if isinstance(obj, nn.Module):  # built on NumPy; place() moves it to where it was saved from
            self.module_specs[id(obj)] = (node["state"].get("_backend") or {}).get("spec")
        state = {k: self.decode(x) for k, x in node["state"].items()}
        if hasattr(obj, "__setstate__"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scikit-learn's version warnings: the file says its version
                obj.__setstate__(state)
        else:
            obj.__dict__.update(state)
        return obj

    # ------------------------------------------------------------------ backends
    def place(self, obj: Any) -> None:
        """Move the loaded modules and estimators to the requested backend, or the one they were saved from."""
        if self.unresolved:
            warnings.warn(
                f"minitrain.load: {', '.join(sorted(set(self.unresolved)))} not given in classes=; loaded as "
                "placeholders (Unresolved) that raise when called",
                UserWarning,
                stacklevel=3,
            )
        handled: set[int] = set()
        for o in self.objs.values():  # fitted estimators: their modules go where the estimator was fitted
            if hasattr(o, "backend_") and hasattr(o, "module_"):
                target = self.backend or _usable(o.backend_) or get_backend("numpy")
                for name in getattr(o, "_portable", ("module_",)):
                    part = o.__dict__.get(name)
                    if isinstance(part, nn.Module):
                        part.to(target)
                        handled.update(id(m) for m in part.modules())
                if self.backend is not None:
                    o.backend_ = self.backend.spec
        modules = [o for o in self.objs.values() if isinstance(o, nn.Module) and id(o) not in handled]
        inner = {id(m) for top in modules for m in top.modules() if m is not top}
        for o in modules:  # other modules: where they were saved from
            target = self.backend or _usable(self.module_specs.get(id(o)))
            if id(o) not in inner and target is not None and target is not o.backend:
                o.to(target)
        for opt, groups, state, clip in self.optimizers:  # over the parameters where they now are
            type(opt).__init__(opt, groups)
            opt.load_state_dict(state)
            for k, v in clip.items():
                setattr(opt, k, v)


def _object_array(values: Any, shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    flat = out.reshape(-1)
    items = np.array(values, dtype=object).reshape(-1) if shape else [values]
    for i, v in enumerate(items):
        flat[i] = v
    return out


def _usable(spec: Any) -> Backend | None:
    if not isinstance(spec, str):
        return None
    info = {i.name: i for i in list_backends()}.get(spec.partition(":")[0])
    if info is None or not info.available:
        return None
    try:
        return get_backend(spec)
    except (ValueError, RuntimeError):
        return None

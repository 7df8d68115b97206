"""Encoding for ``minitrain.io.save``: an object graph to JSON-able nodes and a dict of named arrays."""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from .autograd import Tensor
from .backend import Backend
from .nn.flat import Parameter
from .optim import Optimizer


def _path_of(obj: Any) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


# ---------------------------------------------------------------------------------------- encoding
class _Writer:
    """Turns an object graph into JSON-able nodes and a dict of named arrays (shared objects once)."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.ids: dict[int, int] = {}
        self.keep: list[Any] = []  # keeps encoded objects alive, so their ids stay unique

    def _remember(self, obj: Any) -> int:
        self.keep.append(obj)
        self.ids[id(obj)] = n = len(self.ids)
        return n

    def encode(self, v: Any, where: str) -> Any:
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if id(v) in self.ids:
            return {"$t": "ref", "id": self.ids[id(v)]}
        if isinstance(v, list):
            return [self.encode(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, tuple):
            return {"$t": "tuple", "v": [self.encode(x, f"{where}[{i}]") for i, x in enumerate(v)]}
        if isinstance(v, dict):
            if all(isinstance(k, str) for k in v):
                return {"$t": "dict", "v": {k: self.encode(x, f"{where}.{k}") for k, x in v.items()}}
            items = [[self.encode(k, where), self.encode(x, f"{where}[{k!r}]")] for k, x in v.items()]
            return {"$t": "items", "v": items}
        if isinstance(v, (set, frozenset)):
            return {"$t": type(v).__name__, "v": [self.encode(x, where) for x in sorted(v, key=repr)]}
        if isinstance(v, np.generic):
            return {"$t": "scalar", "dtype": v.dtype.str, "v": v.item()}
        if isinstance(v, np.dtype):
            return {"$t": "dtype", "v": v.str}
        if isinstance(v, Backend):
            return {"$t": "backend", "spec": v.spec}
        if isinstance(v, pathlib.PurePath):
            return {"$t": "path", "v": str(v)}
        if isinstance(v, slice):  # e.g. a fitted ColumnTransformer's output_indices_
            return {"$t": "slice", "v": [self.encode(x, where) for x in (v.start, v.stop, v.step)]}
        if isinstance(v, type) or _is_function(v):
            return self._named(v, where)
        if isinstance(v, np.ndarray) or type(v).__module__.startswith("cupy"):
            return self._array(v, where)
        if isinstance(v, np.random.Generator):
            return {"$t": "generator", "state": self.encode(v.bit_generator.state, where)}
        if isinstance(v, np.random.RandomState):
            return {"$t": "randomstate", "state": self.encode(v.get_state(legacy=False), where)}
        if isinstance(v, Parameter):
            n = self._remember(v)
            data = self.encode(v.backend.to_numpy(v.data), f"{where}.data")
            return {"$t": "parameter", "id": n, "data": data, "requires_grad": bool(v.requires_grad)}
        if isinstance(v, Tensor):
            n = self._remember(v)
            data = self.encode(v.backend.to_numpy(v.data), f"{where}.data")
            return {"$t": "tensor", "id": n, "data": data, "requires_grad": bool(v.requires_grad)}
        if isinstance(v, Optimizer):
            return self._optimizer(v, where)
        return self._object(v, where)

    def _array(self, a: Any, where: str) -> dict[str, Any]:
        a = a if isinstance(a, np.ndarray) else a.get()  # a device array: copied to the host
        if a.dtype.kind in "OUSV" or a.dtype.hasobject:
            return {"$t": "objarray", "dtype": a.dtype.str, "shape": list(a.shape), "v": self.encode(a.tolist(), where)}
        n = self._remember(a)
        name = f"a{n}"
        column_major = a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous
        self.arrays[name] = np.ascontiguousarray(a.T if column_major else a)
        return {"$t": "array", "id": n, "name": name, "T": column_major}

    def _named(self, v: Any, where: str) -> dict[str, Any]:
        path = _path_of(v)
        if "<" in path:
            raise TypeError(f"cannot save {where}: {path} is defined inside a function (a lambda or a closure)")
        return {"$t": "class" if isinstance(v, type) else "function", "path": path}

    def _optimizer(self, opt: Optimizer, where: str) -> dict[str, Any]:
        n = self._remember(opt)
        groups = [[self.encode(p, f"{where}.params") for p in g["params"]] for g in opt.param_groups]
        clip = {k: getattr(opt, k) for k in ("clip_grad_norm", "clip_grad_value")}
        state = self.encode(opt.state_dict(), f"{where}.state")
        return {"$t": "optimizer", "id": n, "class": self._named(type(opt), where)["path"], "groups": groups,
                "state": state, "clip": clip}  # fmt: skip

    def _object(self, v: Any, where: str) -> dict[str, Any]:
        cls = type(v)
        path = _path_of(cls)
        if not hasattr(v, "__dict__"):
            raise TypeError(f"cannot save {where}: a {path} (it has no attributes to save)")
        n = self._remember(v)
        state = v.__getstate__()  # what its pickles hold (a class drops its caches there)
        state = {} if state is None else state
        if not isinstance(state, dict):
            raise TypeError(f"cannot save {where}: {path}'s state is not a dict of attributes")
        node = {"$t": "object", "id": n, "class": self._named(cls, where)["path"]}
        node["state"] = {k: self.encode(x, f"{where}.{k}") for k, x in state.items()}
        return node


def _is_function(v: Any) -> bool:
    return type(v).__name__ in ("function", "builtin_function_or_method", "method")

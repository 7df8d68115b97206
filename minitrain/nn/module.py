"""``Module``: the base of every layer and model (parameters, buffers, submodules, modes, state)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import random
from ..backend import Backend, get_backend
from .flat import FlatBuffer, Parameter, flatten_parameters, move_parameters


class Module:
    """Base class of layers and models, with PyTorch's API.

    Assigning a ``Parameter`` or a ``Module`` as an attribute registers it; ``register_buffer``
    registers non-trained state (e.g. running statistics) that ``state_dict`` saves; ``register_generator``
    gives a module a random generator of its own (e.g. for dropout masks), saved with it when it is pickled.

    Parameters
    ----------
    backend : str or Backend, optional
        Where this module's arrays live; the current backend by default.

    Examples
    --------
    A model of one's own: call ``super().__init__()``, assign its layers and parameters, write ``forward``.

    >>> import numpy as np
    >>> import minitrain as mt
    >>> from minitrain import nn
    >>> class ScaledMLP(nn.Module):
    ...     def __init__(self, n_in, n_hidden, n_out, backend=None):
    ...         super().__init__(backend)
    ...         self.hidden = nn.Linear(n_in, n_hidden, activation="relu", backend=self.backend)
    ...         self.out = nn.Linear(n_hidden, n_out, backend=self.backend)
    ...         self.scale = nn.Parameter(np.ones(n_out, dtype=np.float32), backend=self.backend)
    ...
    ...     def forward(self, x):
    ...         return self.out(self.hidden(x)) * self.scale
    >>> net = ScaledMLP(3, 8, 2)
    >>> [name for name, _ in net.named_parameters()]
    ['scale', 'hidden.weight', 'hidden.bias', 'out.weight', 'out.bias']
    >>> net(mt.tensor([[1.0, 2.0, 3.0]])).shape, net.num_parameters(), net.eval().training
    ((1, 2), 52, False)
    """

    training: bool

    def __init__(self, backend: Any = None) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_generators", {})
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_backend", get_backend(backend))

    # ---------------------------------------------------------------- registration
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError("call Module.__init__() before assigning attributes")
        for store in (self._parameters, self._modules, self._buffers):
            store.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for store in ("_parameters", "_modules", "_buffers", "_generators"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._modules, self._buffers):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, array: Any) -> None:
        """Register a non-trained array (or None) saved in ``state_dict``."""
        self.__dict__.pop(name, None)
        self._buffers[name] = None if array is None else self._backend.asarray(array)

    def register_generator(self, name: str, seed: Any = None) -> None:
        """Give this module a random generator of its own on its backend, as attribute ``name``.

        ``seed`` None draws one from the current stream (``minitrain.random``: the innermost ``seeded`` block's,
        else the one ``manual_seed`` seeds). The generator moves with ``to()`` and is pickled with the module.
        """
        self.__dict__.pop(name, None)
        self._generators[name] = self._backend.generator(random.spawn_seed() if seed is None else seed)

    def named_generators(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """Every random generator of this module and its submodules, with dotted names."""
        for mname, mod in self.named_modules(prefix):
            for gname, gen in mod._generators.items():
                yield (f"{mname}.{gname}" if mname else gname), gen

    def seed_generators(self, seed: int) -> Module:
        """Reseed every random generator of this module and its submodules from ``seed``, each with a stream of
        its own (in ``named_generators`` order); returns self.

        Examples
        --------
        >>> from minitrain import nn
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Dropout(0.5))
        >>> [name for name, _ in net.seed_generators(0).named_generators()]
        ['1.generator', '2.generator']
        """
        seeds = np.random.SeedSequence(int(seed)).spawn(sum(len(m._generators) for m in self.modules()))
        for mod in self.modules():
            for gname in list(mod._generators):
                mod._generators[gname] = mod._backend.generator(int(seeds.pop(0).generate_state(1, np.uint64)[0]))
        return self

    @property
    def backend(self) -> Backend:
        """The backend this module's arrays live on."""
        return self._backend

    # ---------------------------------------------------------------- calling
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Compute the output; subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def _tensor(self, x: Any, dtype: Any = None) -> Any:
        """``x`` as a Tensor on this module's backend: a Tensor as it is (cast to ``dtype`` if given), an array
        (host or backend) or nested list wrapped, so every layer takes arrays as ``Linear`` does."""
        from .. import functional as F
        from ..autograd import Tensor

        if isinstance(x, Tensor):
            return x if dtype is None or x.dtype == dtype else F.astype(x, dtype)
        return Tensor(x, backend=self._backend, dtype=dtype)

    # ---------------------------------------------------------------- traversal
    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Direct submodules with their names."""
        yield from self._modules.items()

    def children(self) -> Iterator[Module]:
        """Direct submodules."""
        yield from self._modules.values()

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every submodule, each once, with dotted names."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, mod = stack.pop(0)
            if id(mod) in seen:
                continue
            seen.add(id(mod))
            yield name, mod
            stack[0:0] = [(f"{name}.{n}" if name else n, m) for n, m in mod._modules.items()]

    def modules(self) -> Iterator[Module]:
        """This module and every submodule."""
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        """Every parameter, each once, with dotted names."""
        seen: set[int] = set()
        mods = self.named_modules(prefix) if recurse else iter([(prefix, self)])
        for mname, mod in mods:
            for pname, p in mod._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self, recurse: bool = True) -> list[Parameter]:
        """Every parameter, each once, in registration order."""
        return [p for _, p in self.named_parameters(recurse=recurse)]

    def trainable_parameters(self, recurse: bool = True) -> list[Parameter]:
        """The parameters that train (``requires_grad`` True), each once, in registration order.

        Examples
        --------
        >>> from minitrain import nn
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 1))
        >>> len(net[0].freeze().parameters()), len(net.trainable_parameters())
        (2, 2)
        """
        return [p for p in self.parameters(recurse) if p.requires_grad]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """Every registered buffer that is not None, with dotted names."""
        for mname, mod in self.named_modules(prefix):
            for bname, b in mod._buffers.items():
                if b is not None:
                    yield (f"{mname}.{bname}" if mname else bname), b

    def num_parameters(self) -> int:
        """Total number of parameter values, frozen ones included (``trainable_parameters`` lists the others)."""
        total = 0
        for p in self.parameters():
            total += p.size
        return total

    # ---------------------------------------------------------------- modes and gradients
    def train(self, mode: bool = True) -> Module:
        """Set training mode (dropout active, batch statistics) on this module and its children."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Set evaluation mode; same as ``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Set ``requires_grad`` of every parameter of this module and its submodules; returns self."""
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def freeze(self) -> Module:
        """Freeze every parameter of this module and its submodules (``requires_grad_(False)``); returns self.

        A frozen parameter gets no gradient, and every optimizer, penalty and gradient clipping leaves it and its
        optimizer state unchanged, also an optimizer built before the freeze.

        Examples
        --------
        >>> import minitrain as mt
        >>> from minitrain import nn, optim
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
        >>> opt = optim.AdamW(net, weight_decay=0.1)
        >>> before = net[0].freeze().weight.numpy().copy()
        >>> (net(mt.tensor([[1.0, 2.0, 3.0]])) ** 2).sum().backward()
        >>> opt.step()
        >>> bool((net[0].weight.numpy() == before).all()), [p.requires_grad for p in net.parameters()]
        (True, [False, False, True, True])
        """
        return self.requires_grad_(False)

    def unfreeze(self) -> Module:
        """Let every parameter of this module and its submodules train again (``requires_grad_(True)``); returns self.

        An optimizer resumes each parameter from the state (moments, step count) it had when it was frozen.

        Examples
        --------
        >>> from minitrain import nn
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1)).freeze()
        >>> len(net.trainable_parameters()), len(net.unfreeze().trainable_parameters())
        (0, 4)
        """
        return self.requires_grad_(True)

    def flat_parameters(self) -> list[FlatBuffer]:
        """This module's parameters as flat buffers (one per dtype), flattening them if needed."""
        return flatten_parameters(self.parameters())

    def zero_grad(self) -> None:
        """Zero every parameter's gradient in place: one fill per flat buffer this module owns whole.

        Never re-flattens, so optimizers built over any grouping of the parameters stay valid.
        """
        params = self.parameters()
        ids = {id(p) for p in params}
        done: set[int] = set()
        for p in params:
            fb = p._flat
            if fb is not None and fb.is_current() and all(id(q) in ids for q in fb.params):
                if id(fb) not in done:
                    done.add(id(fb))
                    fb.zero_grad()
            elif p.grad is not None:
                p.grad.fill(0)
                p._grad_zero = True

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers as NumPy copies, keyed by dotted names."""
        state = {name: p.numpy().copy() for name, p in self.named_parameters()}
        for name, b in self.named_buffers():
            state[name] = np.array(self._backend.to_numpy(b), copy=True)
        return state

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Copy values into this module's parameters and buffers, in place; atomic: if any value does not fit, it
        raises and nothing changed.

        Raises
        ------
        KeyError
            With ``strict``, if keys are missing or unexpected.
        ValueError
            If a shape does not match.
        TypeError, ValueError
            If a value cannot be converted to its parameter's or buffer's dtype (e.g. strings into floats).
        """
        params = dict(self.named_parameters())
        buffers = {}
        for mname, mod in self.named_modules():
            for bname, b in mod._buffers.items():
                if b is not None:
                    buffers[f"{mname}.{bname}" if mname else bname] = (mod, bname)
        own = set(params) | set(buffers)
        if strict:
            missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
            if missing or unexpected:
                raise KeyError(f"state_dict mismatch: missing keys {missing}, unexpected keys {unexpected}")
        updates = []
        for key, value in state.items():
            if key not in own:
                continue
            arr = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
            target = params[key].data if key in params else buffers[key][0]._buffers[buffers[key][1]]
            if tuple(arr.shape) != tuple(target.shape):
                raise ValueError(f"shape mismatch for {key!r}: got {arr.shape}, expected {tuple(target.shape)}")
            try:
                converted = self._backend.asarray(arr, dtype=target.dtype)
            except (TypeError, ValueError) as err:
                raise type(err)(f"cannot load {key!r} ({arr.dtype}) into {target.dtype}: {err}") from err
            updates.append((target, converted))
        for target, converted in updates:  # every value is checked and converted before anything changes
            target[...] = converted

    def to(self, backend: Any) -> Module:
        """Move every parameter, buffer and random generator to another backend, in place; returns self.

        A generator continues its stream where both backends use the same kind of generator (NumPy's on the
        CPU backends); otherwise the new backend's generator is seeded from a draw of the old one.
        """
        be = get_backend(backend)
        move_parameters(self.parameters(), be)
        kind = None
        for m in self.modules():
            for name, b in list(m._buffers.items()):
                if b is not None:
                    m._buffers[name] = be.asarray(m._backend.to_numpy(b))
            for name, gen in list(m._generators.items()):
                kind = type(be.generator(0)) if kind is None else kind
                if type(gen) is not kind:
                    draw = m._backend.to_numpy(gen.integers(0, 2**63 - 1, size=1))
                    m._generators[name] = be.generator(int(draw[0]))
            object.__setattr__(m, "_backend", be)
        return self

    # ---------------------------------------------------------------- repr
    def summary(self, max_depth: int | None = None) -> str:
        """A table of this module's tree: one row per submodule, at every level (indented by depth), with its type,
        its number of parameter values and how many of them train; then the totals (all, trainable, frozen), the
        parameters' dtypes and the backend. ``print`` it.

        A row counts its whole subtree (a container's row includes its children's), each shared parameter once;
        the totals count this module's parameters once each. ``max_depth`` shows submodules down to that depth
        only (1: the direct children); the totals always cover everything.

        Examples
        --------
        >>> from minitrain import nn
        >>> net = nn.Sequential(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), nn.Linear(3, 2)).to("numpy")
        >>> _ = net[0].freeze()
        >>> print(net.summary())
        Sequential on numpy
        name   type        parameters  trainable
        0      Sequential          15          0
          0.0  Linear              15          0
          0.1  ReLU                 0          0
        1      Linear               8          8
        total: 23 parameters, 8 trainable, 15 frozen (float32)
        """
        rows = [("name", "type", "parameters", "trainable")]
        for name, mod in self.named_modules():
            depth = name.count(".") + 1
            if not name or (max_depth is not None and depth > max_depth):
                continue
            params = mod.parameters()
            trainable = sum(p.size for p in params if p.requires_grad)
            rows.append(("  " * (depth - 1) + name, type(mod).__name__, f"{mod.num_parameters():,}", f"{trainable:,}"))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [f"{type(self).__name__} on {self._backend.spec}"]
        for row in rows if len(rows) > 1 else ():
            cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2]), row[3].rjust(widths[3])]
            lines.append("  ".join(cells).rstrip())
        params = self.parameters()
        total, trainable = self.num_parameters(), sum(p.size for p in params if p.requires_grad)
        dtypes = ", ".join(sorted({str(np.dtype(p.dtype)) for p in params})) or "no parameters"
        lines.append(f"total: {total:,} parameters, {trainable:,} trainable, {total - trainable:,} frozen ({dtypes})")
        return "\n".join(lines)

    def extra_repr(self) -> str:
        """One line of this module's settings, shown by ``repr``."""
        return ""

    def __repr__(self) -> str:
        lines = []
        for name, mod in self._modules.items():
            child = repr(mod).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        head = f"{type(self).__name__}({extra}" if extra else f"{type(self).__name__}("
        return head + "\n" + "\n".join(lines) + "\n)"

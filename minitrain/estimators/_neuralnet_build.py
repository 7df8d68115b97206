"""How a NeuralNet estimator builds its module, criterion, optimizer and callbacks from routed parameters, and its
sample-weighted loss."""

from __future__ import annotations

import copy
import fnmatch
import inspect
import numbers
import re
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import clone

from .. import losses, nn, optim
from ..autograd import Tensor
from ..backend import Backend, use_backend
from ..callbacks import Callback, EpochLogger, ProgressBar

#: Keyword arguments with these prefixes are routed to the module, optimizer, criterion or callbacks.
PREFIXES = ("module__", "optimizer__", "criterion__", "callbacks__")
#: Names a module class may use for its input and output sizes (the first one its ``__init__`` accepts is set).
IN_NAMES = ("in_features", "n_features")
OUT_NAMES = ("out_features", "n_outputs", "n_classes")

CRITERIA: dict[str, type] = {
    "cross_entropy": losses.CrossEntropyLoss, "log_loss": losses.CrossEntropyLoss,
    "bce_with_logits": losses.BCEWithLogitsLoss, "binary_cross_entropy": losses.BCEWithLogitsLoss,
    "mse": losses.MSELoss, "squared_error": losses.MSELoss, "l1": losses.L1Loss, "absolute_error": losses.L1Loss,
    "huber": losses.HuberLoss, "poisson": losses.PoissonNLLLoss,
}  # fmt: skip
#: The parameters and attributes shared by the NeuralNet estimators' docstrings.
PARAMS_DOC = """
    Parameters
    ----------
    module : nn.Module class, nn.Module instance, callable or None, default=None
        The network; it maps inputs ``(n_samples, *input_shape)`` (rows ``(n_samples, n_features)``, sequences,
        images: the shape of X) to ``(n_samples, n_outputs)`` outputs (logits for the classifier). A *class* is
        instantiated in ``fit`` with the ``module__*`` parameters, and also gets ``n_features`` (the values of one
        sample, ``prod(input_shape)``) through the first of ``in_features`` / ``n_features`` and the number of
        outputs through the first of ``out_features`` / ``n_outputs`` / ``n_classes`` its ``__init__`` accepts
        (unless routed explicitly), plus ``input_shape`` (the shape of one sample, e.g. ``(channels, height,
        width)``), ``backend`` and ``dtype`` if it accepts them. A *callable* is called as ``module(n_features,
        n_outputs, **module__kwargs)``, with those keywords it accepts. An *instance* is deep-copied at each fresh
        fit (clones never share weights) and takes no ``module__*`` parameters. None builds an MLP (flattening
        samples of more dimensions): ``module__hidden=(100,)`` units, ``module__activation='relu'``,
        ``module__dropout=0.0``. Ready-made builders for images and sequences: :class:`minitrain.models.SmallCNN`,
        :class:`minitrain.models.RecurrentNet`. Integer X stays integer (token ids) when the network has an
        ``Embedding``; otherwise X is cast to floats.
    criterion : loss class, loss instance, name or None, default=None
        None is CrossEntropyLoss for the classifier and MSELoss for the regressor; names: 'cross_entropy',
        'bce_with_logits', 'mse', 'l1', 'huber', 'poisson' (or a class name). ``criterion__*`` go to the class.
        Losses are computed per sample (``reduction='none'``) and averaged with the sample weights.
    optimizer : optimizer class or name, default='adam'
        'sgd', 'adam', 'adamw', 'rmsprop', 'adagrad' or a class of :mod:`minitrain.optim`; built in ``fit`` as
        ``optimizer(module, lr=lr, **optimizer__kwargs)`` (``optimizer__weight_decay=1e-4``, ...), over every
        parameter, frozen ones included (left alone until they unfreeze). ``optimizer__param_groups=[(pattern,
        options), ...]`` gives parameters settings of their own, skorch-style: e.g. ``[('0.*', {'lr': 1e-4})]``.
        Patterns are matched with ``fnmatch`` against the names of ``module_.named_parameters()`` (``*`` also
        matches dots); a parameter joins the group of the first pattern it matches, and those no pattern matches
        form the first group (whose lr ``history_`` records). Every group takes ``lr`` and the ``optimizer__*``
        settings for what its options leave unset. A pattern matching nothing, or an option the optimizer does
        not have, is an error.
    lr : float, default=0.01
        Learning rate (``optimizer__lr`` overrides it).
    max_epochs : int, default=10
        Epochs of ``fit`` (fewer if a callback stops training); ``partial_fit`` runs one.
    batch_size : int, default=128
    train_split : float, CV splitter or None, default=0.2
        Validation data held out of training: a fraction (stratified for the classifier when every class has 2
        samples), the first split of an sklearn splitter (``ShuffleSplit``, ``PredefinedSplit``, ...), or None
        (no validation). With validation, every epoch records ``valid_loss`` and ``valid_score`` (accuracy / R²).
    callbacks : list of Callback or (name, Callback), default=None
        Cloned at each fresh fit into ``callbacks_``. A bare callback is named after its class in snake_case
        (EarlyStopping -> 'early_stopping'); ``callbacks__<name>__<param>`` sets a parameter of the clone,
        ``callbacks__<name>=None`` drops it and ``callbacks__<name>=cb`` replaces or adds one.
    shuffle : bool, default=True
        New sample order each epoch.
    backend : str or Backend, default='auto'
        'numpy', 'numba' or any registered backend ('name:1' names its device 1); 'auto' follows ``use_backend`` /
        ``MINITRAIN_BACKEND``, else the fastest available backend. Resolved in ``fit``; ``backend_`` records it.
    dtype : str or None, default='float32'
        Floating type of the default network (and of modules accepting ``dtype``); data follow the network's
        parameters. None keeps float32 input float32 and uses float64 otherwise.
    random_state : int, RandomState or None, default=None
        Seeds the weights, the split and the shuffling (and the backend's generator, e.g. for dropout).
    verbose : bool, default=False
        Show progress: on a terminal a bar per epoch with the running loss, then the epoch's summary line on
        stderr (adds a ProgressBar); elsewhere (logs, notebooks) one line per epoch on stdout (an EpochLogger).
    warm_start : bool, default=False
        ``fit`` continues from the fitted network, optimizer, history and callbacks instead of starting anew.
    frozen : str, list of str or None, default=None
        Sub-modules to freeze (``requires_grad`` False) each time ``fit`` builds the network anew, e.g.
        ``frozen=('0', '1.conv')``: a name selects the sub-module of that dotted name in
        ``module_.named_modules()`` with everything under it, or one parameter of ``module_.named_parameters()``
        ('0' selects '0.weight' and '0.conv.bias', not '01.weight'; '' the whole network). Frozen parameters keep
        their values bit for bit; other parameters keep the ``requires_grad`` they came with (a module instance may
        come partly frozen). A name that selects nothing is an error listing the sub-modules. Unfreeze them later
        with the :class:`~minitrain.callbacks.Unfreeze` callback.
    augment : transform, callable, list of them or None, default=None
        Augmentation of the training batches (:mod:`minitrain.augment`, e.g. ``[RandomCrop(28, padding=2),
        RandomHorizontalFlip()]``): applied by the training loop to each training batch, never to validation data
        or predictions. Its random numbers come from a generator of the estimator's own, seeded from
        ``random_state``, that continues across ``partial_fit`` and warm starts and is saved with the estimator.
        ``Mixup`` turns class-index targets into class probabilities (for CrossEntropyLoss).
    **kwargs
        Routed parameters: ``module__*``, ``optimizer__*``, ``criterion__*``, ``callbacks__*``. They are real
        parameters (``get_params`` / ``set_params`` / ``clone`` / ``GridSearchCV``); any other name is an error
        at ``fit``.

    Attributes
    ----------
    module_, criterion_, optimizer_ : the trained network, the loss and the optimizer
    callbacks_ : list of (name, Callback)
    history_ : History
        One record per epoch: epoch, train_loss, valid_loss, valid_score, lr, duration and ``<key>_best`` flags;
        ``history_[:, 'valid_loss']`` or ``history_.column('valid_loss')`` gives a column.
    n_epochs_ : int
        Epochs in ``history_``; ``n_iter_`` counts those of the last ``fit`` / ``partial_fit`` call.
    input_shape_ : tuple of int
        The shape of one sample of X: ``(n_features,)`` for rows, e.g. ``(channels, height, width)`` for images;
        ``partial_fit`` and ``predict`` take samples of this shape.
    n_features_in_ : int
        The number of values of one sample (``prod(input_shape_)``), as for the same data flattened.
    feature_names_in_, n_outputs_, backend_
"""

OPTIMIZERS: dict[str, type] = {
    "sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW, "rmsprop": optim.RMSprop, "adagrad": optim.Adagrad,
}  # fmt: skip


def lookup(kind: str, value: Any, table: dict[str, type]) -> Any:
    """``value`` itself, or the class a name stands for (short names and class names, any case)."""
    if not isinstance(value, str):
        return value
    by_name = {**{cls.__name__.lower(): cls for cls in table.values()}, **table}
    cls = by_name.get(value.lower())
    if cls is None:
        raise ValueError(f"unknown {kind} {value!r}; use one of {', '.join(sorted(table))}, or pass a class")
    return cls


def routed(kwargs: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The routed keyword arguments of one target: ``{'module__hidden': 8}`` -> ``{'hidden': 8}``."""
    p = prefix + "__"
    return {k[len(p) :]: v for k, v in kwargs.items() if k.startswith(p)}


def snake_case(name: str) -> str:
    """A callback's default name: ``EarlyStopping`` -> ``early_stopping``, ``LRScheduler`` -> ``lr_scheduler``."""
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)).lower()


def named_callbacks(callbacks: Any, kwargs: dict[str, Any], strict: bool = False) -> list[tuple[str, Any]]:
    """``(name, callback)`` pairs of the ``callbacks`` parameter with ``callbacks__<name>=...`` replacements
    applied (None removes one, a new name adds one). ``strict`` raises on malformed entries and duplicate names."""
    pairs: list[tuple[str, Any]] = []
    for item in callbacks if isinstance(callbacks, (list, tuple)) else ():
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            pairs.append(item)
        elif isinstance(item, tuple) and strict:
            raise TypeError(f"callbacks: a tuple entry must be (name, callback), got {item!r}")
        else:
            pairs.append((snake_case(type(item).__name__), item))
    if strict:
        names = [n for n, _ in pairs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"callbacks: several callbacks are named {dup}; give them names with (name, callback)")
        bad = [n for n in names if "__" in n or not n]
        if bad:
            raise ValueError(f"callbacks: names must be non-empty and free of '__', got {bad}")
    replace = {k: v for k, v in routed(kwargs, "callbacks").items() if "__" not in k}
    out = [(n, replace.pop(n, cb)) for n, cb in pairs]
    out += list(replace.items())
    return [(n, cb) for n, cb in out if cb is not None]


def build_callbacks(est: Any) -> list[tuple[str, Callback]]:
    """Fresh clones of the estimator's callbacks with their routed parameters set, plus, if verbose, a ProgressBar
    when stderr is a terminal, else an EpochLogger (a line per epoch on stdout: logs and notebooks)."""
    out = []
    params = {k: v for k, v in routed(est._kwargs, "callbacks").items() if "__" in k}
    for name, cb in named_callbacks(est.callbacks, est._kwargs, strict=True):
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks: {name!r} is a {type(cb).__name__}, not a minitrain Callback instance")
        cb = clone(cb)
        mine = {k.partition("__")[2]: params.pop(k) for k in list(params) if k.partition("__")[0] == name}
        try:
            cb.set_params(**mine)
        except ValueError as exc:
            raise ValueError(f"callbacks__{name}__*: {exc}") from None
        out.append((name, cb.initialize()))
    if params:
        unknown = sorted(f"callbacks__{k}" for k in params)
        raise ValueError(f"{unknown} name no callback; the callbacks are {[n for n, _ in out] or 'none'}")
    if est.verbose and not any(isinstance(cb, (EpochLogger, ProgressBar)) for _, cb in out):
        tty = getattr(sys.stderr, "isatty", lambda: False)()
        out.append(("progress_bar", ProgressBar()) if tty else ("epoch_logger", EpochLogger()))
    return out


def _accepted(fn: Any) -> set[str]:
    """Names of the keyword arguments ``fn`` (a function or a class) takes explicitly."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _call(what: str, fn: Any, args: tuple, kwargs: dict[str, Any], be: Backend) -> Any:
    with use_backend(be):
        try:
            return fn(*args, **kwargs)
        except TypeError as exc:
            name = getattr(fn, "__name__", type(fn).__name__)
            raise TypeError(f"could not build the {what} {name}(...) with {sorted(kwargs)}: {exc}") from exc


def default_module(
    n_features: int, n_outputs: int, hidden: int | tuple[int, ...] = (100,), activation: str = "relu",
    dropout: float = 0.0, dtype: str = "float32", backend: Any = None, input_shape: tuple[int, ...] | None = None,
) -> nn.Sequential:  # fmt: skip
    """The network used when ``module=None``: Linear layers of ``hidden`` units with ``activation`` (and
    Dropout ``dropout``) after each, then a Linear output layer; tuned with ``module__hidden=(64, 32)`` etc.
    Samples of more than one dimension (``input_shape``) are flattened first."""
    sizes = [hidden] if isinstance(hidden, numbers.Integral) else list(hidden)
    if not all(isinstance(u, numbers.Integral) and not isinstance(u, bool) and u > 0 for u in sizes):
        raise ValueError(f"module__hidden must hold positive whole numbers of units, got {hidden!r}")
    layers: list[nn.Module] = []
    if input_shape is not None and len(input_shape) > 1:
        layers.append(nn.Flatten(backend=backend))
    n_in = n_features
    for units in sizes:
        layers.append(nn.Linear(n_in, int(units), activation=activation, dtype=dtype, backend=backend))
        if dropout:
            layers.append(nn.Dropout(dropout, backend=backend))
        n_in = int(units)
    layers.append(nn.Linear(n_in, n_outputs, dtype=dtype, backend=backend))
    return nn.Sequential(*layers, backend=backend)


def build_module(
    spec: Any, kwargs: dict[str, Any], n_features: int, n_outputs: int, be: Backend, dtype: Any,
    input_shape: tuple[int, ...] | None = None,
) -> Any:  # fmt: skip
    """The network to train, on ``be`` (see the estimators' ``module`` parameter for the rules); ``input_shape``
    (the shape of one sample, default ``(n_features,)``) goes to classes and functions accepting ``input_shape``."""
    spec = default_module if spec is None else spec
    shape = (n_features,) if input_shape is None else tuple(input_shape)
    extra = {"backend": be, "dtype": np.dtype(dtype).name, "input_shape": shape}
    if isinstance(spec, nn.Module):
        if kwargs:
            raise ValueError(
                f"module__{next(iter(kwargs))} cannot be applied: `module` is an already built "
                f"{type(spec).__name__}; pass its class (or a function building it) to route module__* parameters"
            )
        net = copy.deepcopy(spec)
    elif isinstance(spec, type):
        if not issubclass(spec, nn.Module):
            raise TypeError(f"module must be an nn.Module class, instance or a function, got the class {spec.__name__}")
        names = _accepted(spec)
        for group, size in ((IN_NAMES, n_features), (OUT_NAMES, n_outputs)):
            extra[next((n for n in group if n in names), "")] = size
        extra = {k: v for k, v in extra.items() if k in names and k not in kwargs}
        net = _call("module", spec, (), {**extra, **kwargs}, be)
    elif callable(spec):
        names = _accepted(spec)
        extra = {k: v for k, v in extra.items() if k in names and k not in kwargs}
        net = _call("module", spec, (n_features, n_outputs), {**extra, **kwargs}, be)
    else:
        raise TypeError(f"module must be an nn.Module class, instance or a function, got {spec!r}")
    if not isinstance(net, nn.Module):
        raise TypeError(f"the module function returned a {type(net).__name__}, not an nn.Module")
    return net if net.backend is be else net.to(be)


def takes_tokens(module: Any) -> bool:
    """Whether ``module`` takes integer token ids: it holds an ``Embedding``."""
    embedding = getattr(nn, "Embedding", None)
    return embedding is not None and any(isinstance(m, embedding) for m in module.modules())


def build_criterion(spec: Any, kwargs: dict[str, Any], be: Backend) -> Any:
    """The loss, set to per-sample values (``reduction='none'``) so sample weights can be applied."""
    spec = lookup("criterion", spec, CRITERIA)
    if isinstance(spec, nn.Module):
        if kwargs:
            raise ValueError("criterion__* parameters need `criterion` to be a class or a name, not an instance")
        crit = copy.deepcopy(spec)
    elif isinstance(spec, type):
        crit = _call("criterion", spec, (), kwargs, be)
    elif callable(spec):
        if kwargs:
            raise ValueError("criterion__* parameters need `criterion` to be a class or a name, not a function")
        return spec
    else:
        raise TypeError(f"criterion must be a loss class, instance, name or function, got {spec!r}")
    if hasattr(crit, "reduction"):
        crit.reduction = "none"
    if isinstance(crit, nn.Module) and crit.backend is not be:
        crit.to(be)
    return crit


def build_optimizer(spec: Any, lr: float, kwargs: dict[str, Any], module: Any) -> Any:
    """The optimizer over ``module``'s parameters (frozen ones included: optimizers leave them alone until they
    unfreeze); ``optimizer__lr`` overrides ``lr``; ``optimizer__param_groups`` splits them (see ``param_groups``)."""
    spec = lookup("optimizer", spec, OPTIMIZERS)
    if not callable(spec) or isinstance(spec, optim.Optimizer):
        raise TypeError(f"optimizer must be an optimizer class or name (not an instance), got {spec!r}")
    kwargs = dict(kwargs)
    rules = kwargs.pop("param_groups", None)
    groups = None if rules is None else param_groups(rules, module)
    opt = _call("optimizer", spec, (module if groups is None else groups,), {"lr": lr, **kwargs}, module.backend)
    defaults = getattr(opt, "defaults", None)
    for pattern, options in rules if rules is not None and isinstance(defaults, dict) else ():
        unknown = sorted(set(options) - set(defaults))
        if unknown:
            raise ValueError(
                f"optimizer__param_groups: the options {unknown} of pattern {pattern!r} are no hyperparameters of "
                f"{type(opt).__name__}; its hyperparameters are {sorted(defaults)}"
            )
    return opt


def param_groups(rules: Any, module: Any) -> list[dict[str, Any]]:
    """PyTorch parameter groups from skorch-style rules ``[(pattern, {option: value}), ...]``.

    Each pattern is matched with ``fnmatch`` (case-sensitive; ``*`` also matches dots) against the names of
    ``module.named_parameters()``; a parameter joins the group of the first pattern it matches. The parameters no
    pattern matches form the first group, with the optimizer's own settings (the estimator's ``lr`` and the other
    ``optimizer__*``), then come the rules' groups in their order, each with its options over those settings.

    Raises
    ------
    TypeError
        If ``rules`` is not a list of (pattern, dict) pairs.
    ValueError
        If a pattern matches no parameter (or only ones an earlier pattern took); the message lists the names.
    """
    pairs = list(rules) if isinstance(rules, (list, tuple)) else None
    if pairs is None or not all(
        isinstance(r, (list, tuple)) and len(r) == 2 and isinstance(r[0], str) and isinstance(r[1], dict) for r in pairs
    ):
        raise TypeError(
            f"optimizer__param_groups must be a list of (pattern, options) pairs such as [('0.*', {{'lr': 1e-4}})], "
            f"got {rules!r}"
        )
    named = list(module.named_parameters())
    taken: set[int] = set()
    groups = []
    for pattern, options in pairs:
        if "params" in options:
            raise ValueError(f"optimizer__param_groups: the pattern {pattern!r} picks the params; drop 'params'")
        hits = [p for name, p in named if fnmatch.fnmatchcase(name, pattern) and id(p) not in taken]
        if not hits:
            earlier = any(fnmatch.fnmatchcase(name, pattern) for name, _ in named)
            why = "only parameters an earlier pattern took" if earlier else "no parameter"
            raise ValueError(
                f"optimizer__param_groups: the pattern {pattern!r} matches {why}; the parameters are "
                f"{[name for name, _ in named]}"
            )
        taken.update(id(p) for p in hits)
        groups.append({**options, "params": hits})
    rest = [p for _, p in named if id(p) not in taken]
    return ([{"params": rest}] if rest else []) + groups


class WeightedLoss:
    """The Trainer's criterion: per-sample losses of ``loss`` averaged with the batch's sample weights.

    A per-sample loss of shape (n, k) is first averaged over its k outputs (as 'mean' reduction does).
    """

    def __init__(self, loss: Callable[[Tensor, Any], Tensor]) -> None:
        self.loss = loss

    def __call__(self, out: Tensor, yb: Any, wb: Any, wsum: float) -> Tensor:
        value = self.loss(out, yb)
        if value.ndim == 0:
            if wb is not None:
                raise ValueError(
                    "the criterion returned one value per batch, so sample_weight cannot be applied; use a loss "
                    "with a `reduction` attribute (e.g. from minitrain.losses) or one returning per-sample values"
                )
            return value
        if value.ndim > 1:
            value = value.reshape(value.shape[0], -1).mean(axis=1)
        if wb is not None:
            value = value * Tensor._make(wb.astype(value.dtype, copy=False), value.backend)
        return value.sum() * (1.0 / wsum if wsum > 0 else 0.0)

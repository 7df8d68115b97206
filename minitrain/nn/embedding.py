"""``Embedding``: a lookup table of learned vectors (PyTorch's API)."""

from __future__ import annotations

from typing import Any

from .. import functional as F
from ..autograd import Tensor
from ..init import normal_
from .flat import Parameter
from .module import Module


class Embedding(Module):
    """A table of ``num_embeddings`` vectors of size ``embedding_dim``, looked up by integer index.

    Parameters
    ----------
    num_embeddings : int
        Size of the vocabulary.
    embedding_dim : int
        Size of each vector.
    padding_idx : int, optional
        The row of this index starts at zeros and gets no gradient (it stays what it is while training);
        negative values count from the end.
    max_norm : float, optional
        Rows read whose norm exceeds ``max_norm`` are rescaled to it in place, at lookup.
    norm_type : float, default=2.0
        The p of the p-norm for ``max_norm``.
    scale_grad_by_freq : bool, default=False
        Divide each row's gradient by how often its index occurs in the batch.
    sparse : bool, default=False
        Only False: gradients are dense arrays (PyTorch's sparse gradients are not supported).
    dtype : str, default='float32'
    backend : str or Backend, optional

    Attributes
    ----------
    weight : Parameter of shape (num_embeddings, embedding_dim)
        Drawn from N(0, 1), as in PyTorch (the padding row zeroed).

    Notes
    -----
    ``forward(input)`` takes integer indices of any shape (an array or an integer Tensor) and returns a Tensor
    of shape (*input.shape, embedding_dim).

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> emb = mt.nn.Embedding(10, 3, padding_idx=0)
    >>> out = emb(np.array([[1, 2, 0], [4, 0, 0]]))
    >>> out.shape, bool((out.numpy()[1, 1:] == 0).all())
    ((2, 3, 3), True)
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        dtype: str = "float32",
        backend: Any = None,
    ) -> None:
        super().__init__(backend)
        if num_embeddings < 1 or embedding_dim < 1:
            raise ValueError(f"Embedding needs positive sizes, got {num_embeddings} and {embedding_dim}")
        if sparse:
            raise ValueError("Embedding: sparse gradients are not supported; use sparse=False (dense gradients)")
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx must be within num_embeddings, got {padding_idx}")
            padding_idx = int(padding_idx) % num_embeddings
        self.num_embeddings, self.embedding_dim, self.padding_idx = int(num_embeddings), int(embedding_dim), padding_idx
        self.max_norm = None if max_norm is None else float(max_norm)
        self.norm_type, self.scale_grad_by_freq, self.sparse = float(norm_type), bool(scale_grad_by_freq), False
        be = self._backend
        self.weight = normal_(Parameter(be.alloc((num_embeddings, embedding_dim), dtype), backend=be))
        if padding_idx is not None:
            self.weight.data[padding_idx] = 0

    @classmethod
    def from_pretrained(
        cls, embeddings: Any, freeze: bool = True, padding_idx: int | None = None, backend: Any = None, **kwargs: Any
    ) -> Embedding:
        """An ``Embedding`` holding ``embeddings`` (array of shape (num_embeddings, embedding_dim)), frozen by
        default; the padding row keeps its given values. ``kwargs``: ``max_norm``, ``norm_type``,
        ``scale_grad_by_freq``.

        Examples
        --------
        >>> import numpy as np
        >>> from minitrain import nn
        >>> emb = nn.Embedding.from_pretrained(np.eye(3, dtype=np.float32))
        >>> emb(np.array([2])).numpy(), emb.weight.requires_grad
        (array([[0., 0., 1.]], dtype=float32), False)
        """
        array = embeddings.numpy() if isinstance(embeddings, Tensor) else embeddings
        shape = getattr(array, "shape", ())
        if len(shape) != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-D, got shape {shape}")
        dtype = str(getattr(array, "dtype", "float32"))
        emb = cls(shape[0], shape[1], padding_idx=padding_idx, dtype=dtype, backend=backend, **kwargs)
        emb.weight.data[...] = emb.backend.asarray(array, dtype=emb.weight.dtype)
        emb.weight.requires_grad = not freeze
        return emb

    def forward(self, input: Any) -> Tensor:  # noqa: A002 (PyTorch's name)
        """Look up the vectors of ``input`` (integers of any shape); returns (*input.shape, embedding_dim)."""
        return F.embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type, self.scale_grad_by_freq)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2.0:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq:
            s += ", scale_grad_by_freq=True"
        return s

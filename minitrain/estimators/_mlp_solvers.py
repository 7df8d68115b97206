"""The MLP estimators' solvers: scikit-learn's Adam and SGD update rules and its end-of-epoch logic."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .. import optim
from ..callbacks import Callback
from ._mlp_network import linear_layers


class SklearnAdam(optim.Adam):
    """Adam with scikit-learn's epsilon placement, ``lr_t * m / (sqrt(v) + eps)``.

    PyTorch's rule divides by ``sqrt(v_hat) + eps``; both agree once ``eps`` is scaled by
    ``1 / sqrt(1 - beta2**t)`` at step ``t``.
    """

    def _update(self, fb: Any, group: dict[str, Any], state: dict[str, Any]) -> None:
        beta2 = group["betas"][1]
        eps = group["eps"] / math.sqrt(1.0 - beta2 ** state["step"])
        super()._update(fb, {**group, "eps": eps}, state)


class SklearnSGD(optim.SGD):
    """SGD with scikit-learn's velocity ``v = momentum * v - lr * g``: when the learning rate changes
    ('invscaling', 'adaptive'), the momentum buffer is rescaled so past steps keep the rate they were taken
    with. With a constant rate this is PyTorch's rule exactly."""

    def _update(self, fb: Any, group: dict[str, Any], state: dict[str, Any]) -> None:
        last = group.get("last_lr")
        if last is not None and last != group["lr"] and state.get("momentum_buffer") is not None:
            state["momentum_buffer"] *= last / group["lr"]
        group["last_lr"] = group["lr"]
        super()._update(fb, group, state)


def make_optimizer(est: Any, module: Any) -> Any:
    """The solver's optimizer over two groups: weights (L2 / L1, set per batch) and everything else."""
    weights = [lin.weight for lin in linear_layers(module)]
    ids = {id(p) for p in weights}
    others = [p for p in module.parameters() if id(p) not in ids]
    groups = [{"params": weights}, {"params": others}]
    if est.solver == "adam":
        return SklearnAdam(groups, lr=est.learning_rate_init, betas=(est.beta_1, est.beta_2), eps=est.epsilon)
    nesterov = bool(est.nesterovs_momentum and est.momentum > 0)
    return SklearnSGD(groups, lr=est.learning_rate_init, momentum=est.momentum, nesterov=nesterov)


class SklearnRules(Callback):
    """scikit-learn's end-of-epoch logic: loss_curve_, n_iter_no_change / tol, best weights, 'invscaling'
    and 'adaptive' learning rates, verbose lines and the ConvergenceWarning."""

    def __init__(
        self, est: Any = None, n_train: int = 0, validating: bool = False, incremental: bool = False,
        resumed: bool = False,
    ) -> None:  # fmt: skip
        self.est = est
        self.resumed = resumed
        self.n_train = n_train
        self.validating = validating
        self.incremental = incremental

    def on_epoch_end(self, trainer: Any) -> None:
        est = self.est
        rec = trainer.history[-1]
        est.n_iter_ += 1
        est.loss_ = float(rec["train_loss"])
        est.t_ += self.n_train
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}")
        if self.validating:
            score = float(rec.get("valid_score", np.nan))
            est.validation_scores_.append(score)
            est.validation_loss_curve_.append(float(rec["valid_loss"]))
            if est.verbose:
                print(f"Validation score: {score:f}")
        self._count_no_improvement(trainer)
        if est.solver == "sgd" and est.learning_rate == "invscaling":
            trainer.lr = est.learning_rate_init / (est.t_ + 1) ** est.power_t
        if est._no_improvement_count > est.n_iter_no_change:
            what = "Validation score" if est.early_stopping else "Training loss"
            msg = f"{what} did not improve more than tol={est.tol:f} for {est.n_iter_no_change} consecutive epochs."
            if est.solver == "sgd" and est.learning_rate == "adaptive" and trainer.lr > 1e-6:
                trainer.lr = trainer.lr / 5.0
                est._no_improvement_count = 0
                if est.verbose:
                    print(f"{msg} Setting learning rate to {trainer.lr:f}")
            else:
                if est.verbose:
                    small = " Learning rate too small." if est.learning_rate == "adaptive" else ""
                    print(f"{msg}{small} Stopping.")
                trainer.stop_training = True
                return
        if not self.incremental and est.n_iter_ == est.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({est.max_iter}) reached and the optimization hasn't "
                "converged yet.",
                ConvergenceWarning,
                stacklevel=2,
            )

    def _count_no_improvement(self, trainer: Any) -> None:
        est = self.est
        if est.early_stopping:
            score = est.validation_scores_[-1]
            worse = score < est.best_validation_score_ + est.tol  # scikit-learn's test (NaN counts as better)
            est._no_improvement_count = est._no_improvement_count + 1 if worse else 0
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                est._best_weights = trainer.get_weights()
        else:
            loss = est.loss_curve_[-1]
            if est.best_loss_ is None:  # early stopping was on until now (scikit-learn raises a TypeError here)
                est.best_loss_ = np.inf
            worse = loss > est.best_loss_ - est.tol
            est._no_improvement_count = est._no_improvement_count + 1 if worse else 0
            if loss < est.best_loss_:
                est.best_loss_ = loss
                if self._restores():
                    est._best_weights = trainer.get_weights()

    def on_train_begin(self, trainer: Any) -> None:
        # like scikit-learn, the starting weights are the fallback "best" ones (a resumed fit keeps its own)
        if not self.resumed:
            self.est._best_weights = trainer.get_weights() if self._restores() else None

    def _restores(self) -> bool:
        restore = self.est.restore_best_weights
        return restore is True or (restore == "auto" and self.est.early_stopping)

    def on_train_end(self, trainer: Any) -> None:
        est = self.est
        if est._best_weights is not None and self._restores():
            trainer.set_weights(est._best_weights)
        est._best_weights = None


class SklearnOptimizerView:
    """What code written for scikit-learn's MLP reads from ``mlp._optimizer``, taken from the estimator's optimizer.

    ``learning_rate`` (the current rate: after 'adaptive' or 'invscaling' updates for 'sgd', bias-corrected for
    the step reached for 'adam', as scikit-learn computes it), ``learning_rate_init``, ``t`` (steps taken); for
    'sgd' also ``momentum``, ``nesterov``, ``lr_schedule`` and ``power_t``, for 'adam' ``beta_1``, ``beta_2`` and
    ``epsilon``.
    """

    def __init__(self, est: Any) -> None:
        self._est = est
        state = est.optimizer_.state_dict() if est.optimizer_ is not None else est.__dict__["_optimizer_state"]
        self._lr = float(state["param_groups"][0]["lr"])
        self.t = max((int(s.get("step", 0)) for s in state["state"].values()), default=0)
        self.learning_rate_init = float(est.learning_rate_init)
        if est.solver == "sgd":
            self.momentum, self.nesterov = float(est.momentum), bool(est.nesterovs_momentum)
            self.lr_schedule, self.power_t = est.learning_rate, float(est.power_t)
        else:
            self.beta_1, self.beta_2, self.epsilon = float(est.beta_1), float(est.beta_2), float(est.epsilon)

    @property
    def learning_rate(self) -> float:
        """The learning rate of the last step."""
        if self._est.solver == "sgd" or self.t == 0:
            return self._lr
        return self._lr * math.sqrt(1 - self.beta_2**self.t) / (1 - self.beta_1**self.t)

    def __repr__(self) -> str:
        kind = "SGDOptimizer" if self._est.solver == "sgd" else "AdamOptimizer"
        return f"<{kind} view: learning_rate={self.learning_rate:.6g}, t={self.t}>"

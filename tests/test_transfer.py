"""Transfer learning: ``Module.summary``, ``frozen=`` on the NeuralNet estimators, per-group learning rates through
``optimizer__param_groups``, the ``Unfreeze`` callback, and the transfer-learning example."""

from __future__ import annotations

import importlib.util
import pathlib
import re

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import StandardScaler

import minitrain as mt
from minitrain import data, nn, optim, training
from minitrain import functional as F
from minitrain.callbacks import Callback, Unfreeze
from minitrain.callbacks.finetuning import select_parameters
from minitrain.estimators import NeuralNetClassifier, NeuralNetRegressor

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def mlp(backend=None, seed=0, out=3):
    """Linear 4->6 (0), Linear 6->5 (1), Linear 5->out (2), on ``backend``."""
    with mt.random.seeded(seed):
        return nn.Sequential(
            nn.Linear(4, 6, activation="tanh"), nn.Linear(6, 5, activation="tanh"), nn.Linear(5, out), backend=backend
        )


def clf(module, backend="numpy", **kw):
    return NeuralNetClassifier(module, backend=backend, random_state=0, max_epochs=5, lr=0.05, train_split=None, **kw)


class Snapshots(Callback):
    """Copies of every parameter at the end of each epoch, keyed by epoch."""

    def initialize(self):
        self.seen_ = {}
        return self

    def on_epoch_end(self, trainer):
        self.seen_[trainer.epoch] = trainer.module.state_dict()


# ------------------------------------------------------------------ summary
def test_summary_counts_parameters_per_submodule_and_in_total():
    net = nn.Sequential(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), nn.Linear(3, 2, dtype="float64")).to("numpy")
    net[0][0].weight.requires_grad = False  # 12 frozen values
    text = net.summary()
    lines = text.splitlines()
    assert lines[0] == "Sequential on numpy"
    assert lines[1].split() == ["name", "type", "parameters", "trainable"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:-1]}
    assert rows == {"0": ["Sequential", "15", "3"], "0.0": ["Linear", "15", "3"], "0.1": ["ReLU", "0", "0"],
                    "1": ["Linear", "8", "8"]}  # fmt: skip
    assert lines[3].startswith("  0.0")  # indented by depth
    assert lines[-1] == "total: 23 parameters, 11 trainable, 12 frozen (float32, float64)"


def test_summary_max_depth_hides_deeper_rows_but_not_from_the_totals():
    net = nn.Sequential(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), nn.Linear(3, 2)).to("numpy")
    lines = net.summary(max_depth=1).splitlines()
    assert [line.split()[0] for line in lines[2:-1]] == ["0", "1"]
    assert lines[-1] == "total: 23 parameters, 23 trainable, 0 frozen (float32)"


def test_summary_counts_a_shared_layer_once_and_groups_thousands():
    shared = nn.Linear(40, 40)
    net = nn.Sequential(shared, nn.ReLU(), shared).to("numpy")
    assert net.summary().splitlines()[-1] == "total: 1,640 parameters, 1,640 trainable, 0 frozen (float32)"
    leaf = nn.Linear(3, 2).to("numpy").freeze().summary()
    assert leaf == "Linear on numpy\ntotal: 8 parameters, 0 trainable, 8 frozen (float32)"


# ------------------------------------------------------------------ selecting sub-modules by name
def test_a_name_selects_its_submodule_and_everything_under_it_not_siblings_sharing_its_digits():
    net = nn.Sequential(*[nn.Linear(2, 2) for _ in range(12)])
    names = {id(p): n for n, p in net.named_parameters()}
    assert [names[id(p)] for p in select_parameters(net, "1")] == ["1.weight", "1.bias"]
    assert [names[id(p)] for p in select_parameters(net, ["11", "1.bias"])] == ["1.bias", "11.weight", "11.bias"]
    assert len(select_parameters(net, "")) == 24


@pytest.mark.parametrize(
    ("names", "error", "match"),
    [
        ("3", ValueError, r"'3' names no sub-module or parameter of this Sequential; its sub-modules are \['0', '1'"),
        ("1", ValueError, "'1' names a sub-module without parameters"),
        ([0], TypeError, "must be a sub-module name or a list of them"),
    ],
)
def test_names_that_select_nothing_are_errors_listing_the_submodules(names, error, match):
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with pytest.raises(error, match=match):
        select_parameters(net, names, "frozen")


# ------------------------------------------------------------------ frozen=
@pytest.mark.parametrize("cls", [NeuralNetClassifier, NeuralNetRegressor], ids=lambda c: c.__name__)
def test_frozen_keeps_exactly_the_named_submodules_bit_for_bit(cls, backend, iris):
    X, y = iris
    net = mlp(backend, out=3 if cls is NeuralNetClassifier else 1)
    before = net.state_dict()
    est = cls(net, frozen=("0", "2.bias"), backend=backend.name, random_state=0, max_epochs=5, lr=0.05)
    est.fit(X, y if cls is NeuralNetClassifier else X[:, 0])
    after = est.module_.state_dict()
    frozen = {"0.weight", "0.bias", "2.bias"}
    for name in before:
        assert np.array_equal(after[name], before[name]) == (name in frozen), name
    assert [n for n, p in est.module_.named_parameters() if not p.requires_grad] == ["0.weight", "0.bias", "2.bias"]
    assert all(p.requires_grad for p in net.parameters())  # the instance given is copied, not changed


def test_frozen_applies_at_each_fresh_fit_and_keeps_what_the_module_came_with(iris):
    net = mlp("numpy")
    net[2].freeze()
    est = clf(net, frozen="0").fit(*iris)
    assert [n for n, p in est.module_.named_parameters() if not p.requires_grad] == ["0.weight", "0.bias", "2.weight",
                                                                                     "2.bias"]  # fmt: skip
    est.set_params(frozen=None, module=mlp("numpy")).fit(*iris)
    assert all(p.requires_grad for p in est.module_.parameters())


def test_frozen_unknown_name_is_an_error_and_the_estimator_stays_unfitted(iris):
    est = clf(mlp("numpy"), frozen=["0", "head"])
    with pytest.raises(ValueError, match=r"frozen: 'head' names no sub-module .* sub-modules are \['0', '1', '2'\]"):
        est.fit(*iris)
    assert not hasattr(est, "module_")


def test_frozen_is_a_constructor_parameter_for_get_set_params_clone_and_grid_search(iris):
    est = clf(None, module__hidden=(6,), frozen=("0",))
    assert est.get_params()["frozen"] == ("0",) and clone(est).frozen == ("0",)
    assert est.set_params(frozen=["1.bias"]).frozen == ["1.bias"] and "frozen=['1.bias']" in repr(est)
    search = GridSearchCV(est, {"frozen": [None, ("0",)]}, cv=2).fit(*iris)
    assert [p["frozen"] for p in search.cv_results_["params"]] == [None, ("0",)]
    best = search.best_estimator_
    assert all(p.requires_grad == (best.frozen is None) for p in best.module_[0].parameters())


# ------------------------------------------------------------------ optimizer__param_groups
def test_param_groups_give_their_parameters_their_own_learning_rate(backend, iris):
    net = mlp(backend)
    before = net.state_dict()
    est = clf(net, backend=backend.name, optimizer__param_groups=[("0.*", {"lr": 0.0}), ("2.bias", {"lr": 1e-3})])
    est.fit(*iris)
    groups = est.optimizer_.param_groups
    names = {id(p): n for n, p in est.module_.named_parameters()}
    assert [([names[id(p)] for p in g["params"]], g["lr"]) for g in groups] == [
        (["1.weight", "1.bias", "2.weight"], 0.05), (["0.weight", "0.bias"], 0.0), (["2.bias"], 1e-3),
    ]  # fmt: skip
    after = est.module_.state_dict()
    for name in before:
        assert np.array_equal(after[name], before[name]) == name.startswith("0."), name


def test_the_first_matching_pattern_wins_and_other_optimizer_settings_apply_to_every_group(iris):
    rules = [("0.weight", {"lr": 0.0, "weight_decay": 0.5}), ("0.*", {"lr": 1e-3})]
    est = clf(mlp("numpy"), optimizer="sgd", optimizer__momentum=0.9, optimizer__param_groups=rules).fit(*iris)
    groups = est.optimizer_.param_groups
    assert [len(g["params"]) for g in groups] == [4, 1, 1]
    assert [(g["lr"], g["momentum"], g["weight_decay"]) for g in groups] == [(0.05, 0.9, 0.0), (0.0, 0.9, 0.5),
                                                                             (1e-3, 0.9, 0.0)]  # fmt: skip


def test_param_groups_covering_every_parameter_leave_no_default_group(iris):
    est = clf(mlp("numpy"), optimizer__param_groups=[("*", {"lr": 0.02})]).fit(*iris)
    assert len(est.optimizer_.param_groups) == 1 and est.optimizer_.param_groups[0]["lr"] == 0.02
    assert est.history_[0, "lr"] == 0.02


@pytest.mark.parametrize(
    ("rules", "error", "match"),
    [
        ([("head.*", {"lr": 0.1})], ValueError,
         re.escape("pattern 'head.*' matches no parameter; the parameters are ['0.weight', '0.bias', '1.weight'")),
        ([("0.*", {"lr": 0.1}), ("0.bias", {"lr": 0.2})], ValueError, "'0.bias' matches only parameters an earlier"),
        ([("0.*", {"lrr": 0.1})], ValueError, r"options \['lrr'\] of pattern '0.\*' are no hyperparameters of Adam"),
        ([("0.*", {"params": []})], ValueError, "drop 'params'"),
        ([("0.*", {"lr": -1.0})], ValueError, "lr must be in"),
        ({"0.*": {"lr": 0.1}}, TypeError, r"a list of \(pattern, options\) pairs"),
        ([("0.*", 0.1)], TypeError, r"a list of \(pattern, options\) pairs"),
    ],
)  # fmt: skip
def test_bad_param_groups_are_reported_at_fit(rules, error, match, iris):
    est = clf(mlp("numpy"), optimizer__param_groups=rules)
    with pytest.raises(error, match=match):
        est.fit(*iris)
    assert not hasattr(est, "module_")


def test_param_groups_survive_clone_and_grid_search(iris):
    est = clf(mlp("numpy"), optimizer__param_groups=[("0.*", {"lr": 0.0})])
    twin = clone(est)
    assert twin.get_params()["optimizer__param_groups"] == [("0.*", {"lr": 0.0})]
    grid = {"optimizer__param_groups": [[("0.*", {"lr": 0.0})], [("2.*", {"lr": 0.0})]]}
    search = GridSearchCV(est, grid, cv=2).fit(*iris)
    assert search.best_estimator_.optimizer_.param_groups[1]["lr"] == 0.0


# ------------------------------------------------------------------ Unfreeze
def test_unfreeze_lets_the_frozen_parameters_train_from_the_start_of_its_epoch(backend, iris):
    net = mlp(backend)
    before = net.state_dict()
    est = clf(net, backend=backend.name, frozen=["0", "1"], callbacks=[Unfreeze(at_epoch=3, modules="1"), Snapshots()])
    est.fit(*iris)
    (_, unfreeze), (_, snaps) = est.callbacks_
    assert unfreeze.unfrozen_epoch_ == 3
    for epoch, state in snaps.seen_.items():
        assert np.array_equal(state["1.weight"], before["1.weight"]) == (epoch < 3), epoch
        assert np.array_equal(state["0.weight"], before["0.weight"]), epoch  # not named: stays frozen
        assert not np.array_equal(state["2.weight"], before["2.weight"]), epoch
    assert not np.array_equal(snaps.seen_[4]["1.weight"], snaps.seen_[3]["1.weight"])


def test_unfreeze_without_modules_unfreezes_everything_at_the_first_epoch(iris):
    est = clf(mlp("numpy"), frozen="", callbacks=[Unfreeze(1)]).fit(*iris)
    assert all(p.requires_grad for p in est.module_.parameters())
    assert not np.array_equal(est.module_[0].weight.numpy(), mlp("numpy")[0].weight.numpy())


def test_unfreeze_counts_epochs_over_the_whole_history_of_partial_fit_calls(iris):
    X, y = iris
    est = clf(mlp("numpy"), frozen="0", callbacks=[Unfreeze(at_epoch=3)])
    est.partial_fit(X, y, classes=[0, 1, 2])
    est.partial_fit(X, y)
    assert not est.module_[0].weight.requires_grad and est.callbacks_[0][1].unfrozen_epoch_ is None
    est.partial_fit(X, y)
    assert est.module_[0].weight.requires_grad and est.callbacks_[0][1].unfrozen_epoch_ == 3
    est.set_params(warm_start=True, max_epochs=2).fit(X, y)  # a continued fit neither refreezes nor unfreezes
    assert est.module_[0].weight.requires_grad and est.n_epochs_ == 5
    est.set_params(warm_start=False, max_epochs=2).fit(X, y)  # a fresh fit freezes anew; epoch 3 is not reached
    assert not est.module_[0].weight.requires_grad and est.callbacks_[0][1].unfrozen_epoch_ is None


def test_unfreeze_is_routed_cloned_and_grid_searched(iris):
    est = clf(mlp("numpy"), frozen="0", callbacks=[Unfreeze(at_epoch=2)], callbacks__unfreeze__at_epoch=4)
    assert est.get_params()["callbacks__unfreeze__at_epoch"] == 4
    assert clone(Unfreeze(at_epoch=2, modules=["0"])).get_params() == {"at_epoch": 2, "modules": ["0"]}
    est.fit(*iris)
    assert est.callbacks_[0][1].unfrozen_epoch_ == 4 and est.callbacks[0].at_epoch == 2
    search = GridSearchCV(est, {"callbacks__unfreeze__at_epoch": [2, 9]}, cv=2).fit(*iris)
    assert [p["callbacks__unfreeze__at_epoch"] for p in search.cv_results_["params"]] == [2, 9]
    assert search.best_estimator_.callbacks_[0][1].get_params()["at_epoch"] in (2, 9)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"at_epoch": 0}, "at_epoch must be an integer >= 1"),
        ({"at_epoch": 2.5}, "at_epoch must be an integer >= 1"),
        ({"at_epoch": 2, "modules": "head"}, "Unfreeze: modules: 'head' names no sub-module"),
    ],
)
def test_bad_unfreeze_settings_are_reported_before_the_first_epoch(params, match, iris):
    est = clf(mlp("numpy"), frozen="0", callbacks=[Unfreeze(**params), Snapshots()])
    with pytest.raises(ValueError, match=match):
        est.fit(*iris)


def test_unfreeze_refuses_parameters_the_optimizer_does_not_hold():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1)).to("numpy")
    model[0].freeze()
    opt = optim.SGD(model.trainable_parameters(), lr=0.1)
    crit = lambda out, y, w, n: F.mse_loss(out, y.reshape(-1, 1))  # noqa: E731
    trainer = training.Trainer(model, crit, opt, batch_size=4, callbacks=[Unfreeze(at_epoch=2)])
    with pytest.raises(ValueError, match=r"does not hold the parameters \['0.weight', '0.bias'\]"):
        trainer.fit(data.ArrayDataset(np.ones((8, 2)), np.ones(8), backend="numpy"), epochs=3)


# ------------------------------------------------------------------ the example
def test_transfer_learning_example_beats_training_from_scratch(backend, capsys):
    spec = importlib.util.spec_from_file_location("transfer_learning", EXAMPLES / "transfer_learning.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    means = example.main(["--backend", backend.name, "--draws", "3"])
    out = capsys.readouterr().out
    assert means["transfer, body frozen"] > means["from scratch"] + 0.01, out
    assert means["transfer, body unfrozen halfway"] > means["from scratch"] + 0.01, out
    assert "total: 7,365 parameters, 2,565 trainable, 4,800 frozen (float32)" in out
    assert f"(backend {backend.name})" in out and "training accuracy 1.0000" in out

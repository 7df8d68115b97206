"""Learning-rate schedules: lr sequences against their formulas, plateau logic, state round trips, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minitrain import optim, schedules
from minitrain.nn import Parameter

BASE = (0.1, 0.02)  # base lrs of the two parameter groups
N = 20


@pytest.fixture
def opt(backend):
    """SGD over two parameter groups with different base lrs."""
    groups = [{"params": [Parameter(np.ones(3))], "lr": BASE[0]}, {"params": [Parameter(np.ones(2))], "lr": BASE[1]}]
    return optim.SGD(groups)


def _lrs(sched, opt, n=N):
    """The lrs of each group at t = 0 .. n-1 (t = 0 set at construction), checking the groups agree."""
    seen = []
    for t in range(n):
        if t:
            sched.step()
        assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups]
        seen.append(sched.get_last_lr())
    return np.array(seen)


def _expected(formula, n=N):
    return np.array([[formula(t, base) for base in BASE] for t in range(n)])


def _warmup(t, base, steps, start=0.0):
    return base * (start + (1 - start) * t / steps)


CLOSED_FORMS = {
    "constant-default": (lambda o: schedules.ConstantLR(o), lambda t, b: b),
    "constant": (
        lambda o: schedules.ConstantLR(o, factor=0.25, total_iters=4),
        lambda t, b: b * (0.25 if t < 4 else 1),
    ),
    "lambda": (lambda o: schedules.LambdaLR(o, lambda t: 1 / (t + 1)), lambda t, b: b / (t + 1)),
    "step": (lambda o: schedules.StepLR(o, step_size=3, gamma=0.5), lambda t, b: b * 0.5 ** (t // 3)),
    "multistep": (
        lambda o: schedules.MultiStepLR(o, milestones=[11, 2, 5, 5], gamma=0.5),
        lambda t, b: b * 0.5 ** sum(t >= m for m in (2, 5, 5, 11)),
    ),
    "exponential": (lambda o: schedules.ExponentialLR(o, gamma=0.9), lambda t, b: b * 0.9**t),
    "cosine": (
        lambda o: schedules.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
        lambda t, b: 0.001 + (b - 0.001) * (1 + math.cos(math.pi * t / 10)) / 2,
    ),
    "invscaling": (lambda o: schedules.InverseScalingLR(o), lambda t, b: b / math.sqrt(t + 1)),
    "invscaling-0.25": (lambda o: schedules.InverseScalingLR(o, power_t=0.25), lambda t, b: b / (t + 1) ** 0.25),
    "linear-default": (
        lambda o: schedules.LinearLR(o),
        lambda t, b: b * (1 / 3 + (1 - 1 / 3) * min(t, 5) / 5),
    ),
    "linear": (
        lambda o: schedules.LinearLR(o, start_factor=0.25, end_factor=0.75, total_iters=8),
        lambda t, b: b * (0.25 + 0.5 * min(t, 8) / 8),
    ),
    "warmup": (lambda o: schedules.WarmupLR(o, 5), lambda t, b: _warmup(t, b, 5) if t < 5 else b),
    "warmup-start": (
        lambda o: schedules.WarmupLR(o, 4, start_factor=0.2),
        lambda t, b: _warmup(t, b, 4, 0.2) if t < 4 else b,
    ),
    "warmup-cosine": (
        lambda o: schedules.WarmupLR(o, 5, after=schedules.CosineAnnealingLR(o, T_max=10)),
        lambda t, b: _warmup(t, b, 5) if t < 5 else b * (1 + math.cos(math.pi * (t - 5) / 10)) / 2,
    ),
    "warmup-step": (
        lambda o: schedules.WarmupLR(o, 3, after=schedules.StepLR(o, step_size=4, gamma=0.1)),
        lambda t, b: _warmup(t, b, 3) if t < 3 else b * 0.1 ** ((t - 3) // 4),
    ),
}


@pytest.mark.parametrize("case", list(CLOSED_FORMS))
def test_schedule_follows_its_formula(opt, case):
    make, formula = CLOSED_FORMS[case]
    np.testing.assert_allclose(_lrs(make(opt), opt), _expected(formula), rtol=1e-12, atol=1e-15)


def test_lambda_lr_takes_one_function_per_group(opt):
    sched = schedules.LambdaLR(opt, [lambda t: 0.5**t, lambda t: t + 1])
    expected = [[BASE[0] * 0.5**t, BASE[1] * (t + 1)] for t in range(6)]
    np.testing.assert_allclose(_lrs(sched, opt, 6), expected, rtol=1e-12)


def test_scheduler_records_initial_lr_and_base_lrs(opt):
    opt.param_groups[0]["lr"] = 0.5
    sched = schedules.StepLR(opt, step_size=1, gamma=0.5)
    assert [g["initial_lr"] for g in opt.param_groups] == [0.5, BASE[1]]
    assert sched.base_lrs == [0.5, BASE[1]]


def test_optimizer_steps_with_the_scheduled_lr(opt, backend):
    sched = schedules.ExponentialLR(opt, gamma=0.5)
    sched.step()
    p = opt.param_groups[0]["params"][0]
    p.grad[...] = 1.0
    opt.step()
    np.testing.assert_allclose(backend.to_numpy(p.data), 1.0 - BASE[0] * 0.5)


def test_resuming_with_last_epoch_continues_the_schedule(opt):
    first = schedules.StepLR(opt, step_size=3, gamma=0.5)
    for _ in range(4):
        first.step()
    resumed = schedules.StepLR(opt, step_size=3, gamma=0.5, last_epoch=first.last_epoch)
    assert resumed.last_epoch == 5
    assert resumed.get_last_lr() == pytest.approx([b * 0.5 for b in BASE])


def test_resuming_without_initial_lr_raises(opt):
    with pytest.raises(ValueError, match="initial_lr"):
        schedules.StepLR(opt, step_size=3, last_epoch=4)


# ---------------------------------------------------------------------- state
@pytest.mark.parametrize(
    "make",
    [
        lambda o: schedules.StepLR(o, step_size=3, gamma=0.5),
        lambda o: schedules.LambdaLR(o, lambda t: 0.9**t),
        lambda o: schedules.WarmupLR(o, 4, after=schedules.CosineAnnealingLR(o, T_max=6)),
    ],
    ids=["step", "lambda", "warmup-cosine"],
)
def test_state_dict_round_trip_continues_identically(opt, backend, make):
    sched = make(opt)
    for _ in range(6):
        sched.step()
    saved = sched.state_dict()
    groups = [{"params": [Parameter(np.ones(3))], "lr": BASE[0]}, {"params": [Parameter(np.ones(2))], "lr": BASE[1]}]
    opt2 = optim.SGD(groups)
    sched2 = make(opt2)
    sched2.load_state_dict(saved)
    assert sched2.last_epoch == sched.last_epoch
    assert [g["lr"] for g in opt2.param_groups] == sched.get_last_lr()
    np.testing.assert_allclose(_lrs(sched2, opt2, 5), _lrs(sched, opt, 5))
    assert "optimizer" not in saved and "lr_lambdas" not in saved


def test_load_state_dict_rejects_other_group_count(opt):
    sched = schedules.StepLR(opt, step_size=2)
    single = schedules.StepLR(optim.SGD([Parameter(np.ones(2))], lr=0.1), step_size=2)
    with pytest.raises(ValueError, match="param groups"):
        single.load_state_dict(sched.state_dict())


# ---------------------------------------------------------------------- ReduceLROnPlateau
def _plateau(opt, metrics, **kwargs):
    sched = schedules.ReduceLROnPlateau(opt, **kwargs)
    lrs = []
    for m in metrics:
        sched.step(m)
        assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups]
        lrs.append(sched.get_last_lr()[0])
    return np.array(lrs) / BASE[0]


def test_plateau_reduces_after_patience_bad_steps(opt):
    lrs = _plateau(opt, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], patience=2, factor=0.5)
    np.testing.assert_allclose(lrs, [1, 1, 1, 0.5, 0.5, 0.5, 0.25])


def test_plateau_improvements_reset_patience(opt):
    lrs = _plateau(opt, [5.0, 4.0, 4.5, 3.0, 3.5, 3.5, 3.5], patience=2, factor=0.5)
    np.testing.assert_allclose(lrs, [1, 1, 1, 1, 1, 1, 0.5])


def test_plateau_cooldown_ignores_bad_steps_after_a_reduction(opt):
    lrs = _plateau(opt, [1.0] * 8, patience=0, cooldown=2, factor=0.5)
    np.testing.assert_allclose(lrs, [1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125])


def test_plateau_respects_min_lr_per_group(opt):
    _plateau(opt, [1.0] * 6, patience=0, factor=0.1, min_lr=[0.005, 0.0])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.005)
    assert opt.param_groups[1]["lr"] == pytest.approx(BASE[1] * 0.1**5)


def test_plateau_mode_max_treats_increases_as_improvements(opt):
    np.testing.assert_allclose(_plateau(opt, [1.0, 2.0, 3.0, 4.0], mode="max", patience=0), [1, 1, 1, 1])
    np.testing.assert_allclose(_plateau(opt, [4.0, 3.0], mode="max", patience=0), [1, 0.1])


@pytest.mark.parametrize(("mode", "expected"), [("rel", [1, 0.1, 0.01]), ("abs", [1, 1, 0.1])])
def test_plateau_threshold_modes(opt, mode, expected):
    # 10 -> 9.5 beats the absolute threshold (9.9) but not the relative one (10 * 0.9)
    lrs = _plateau(opt, [10.0, 9.5, 9.5], patience=0, threshold=0.1, threshold_mode=mode)
    np.testing.assert_allclose(lrs, expected)


@pytest.mark.parametrize(("mode", "expected"), [("rel", [1, 0.1]), ("abs", [1, 1])])
def test_plateau_threshold_modes_when_maximizing(opt, mode, expected):
    # 10 -> 10.5 beats the absolute threshold (10.1) but not the relative one (10 * 1.1)
    np.testing.assert_allclose(
        _plateau(opt, [10.0, 10.5], mode="max", patience=0, threshold=0.1, threshold_mode=mode), expected
    )


def test_plateau_skips_reductions_smaller_than_eps(opt):
    np.testing.assert_allclose(_plateau(opt, [1.0, 1.0], patience=0, factor=0.5, eps=1.0), [1, 1])


def test_plateau_step_needs_a_metric(opt):
    with pytest.raises(TypeError, match="monitored metric"):
        schedules.ReduceLROnPlateau(opt).step()


def test_plateau_state_dict_round_trip(opt):
    sched = schedules.ReduceLROnPlateau(opt, patience=1, factor=0.5)
    for m in [3.0, 2.0, 2.0]:
        sched.step(m)
    opt2 = optim.SGD([{"params": [Parameter(np.ones(3))], "lr": 9.0}, {"params": [Parameter(np.ones(2))], "lr": 9.0}])
    sched2 = schedules.ReduceLROnPlateau(opt2, patience=1, factor=0.5)
    sched2.load_state_dict(sched.state_dict())
    assert sched2.best == 2.0 and sched2.num_bad_epochs == 1
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    sched.step(2.0)
    sched2.step(2.0)
    assert sched2.get_last_lr() == sched.get_last_lr() == pytest.approx([b * 0.5 for b in BASE])


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda o: schedules.StepLR(o, step_size=0), ValueError),
        (lambda o: schedules.StepLR(o, step_size=2.5), ValueError),
        (lambda o: schedules.StepLR(o, step_size=2, gamma=0.0), ValueError),
        (lambda o: schedules.MultiStepLR(o, milestones=[2, -1]), ValueError),
        (lambda o: schedules.ExponentialLR(o, gamma=-0.5), ValueError),
        (lambda o: schedules.ExponentialLR(o, gamma="0.5"), TypeError),
        (lambda o: schedules.CosineAnnealingLR(o, T_max=0), ValueError),
        (lambda o: schedules.ConstantLR(o, factor=1.5), ValueError),
        (lambda o: schedules.ConstantLR(o, total_iters=-1), ValueError),
        (lambda o: schedules.LinearLR(o, start_factor=0.0), ValueError),
        (lambda o: schedules.LinearLR(o, end_factor=1.5), ValueError),
        (lambda o: schedules.LinearLR(o, total_iters=0), ValueError),
        (lambda o: schedules.InverseScalingLR(o, power_t=-1), ValueError),
        (lambda o: schedules.LambdaLR(o, [lambda t: 1.0]), ValueError),
        (lambda o: schedules.LambdaLR(o, 0.5), ValueError),
        (lambda o: schedules.WarmupLR(o, -1), ValueError),
        (lambda o: schedules.WarmupLR(o, 3, start_factor=2.0), ValueError),
        (lambda o: schedules.WarmupLR(o, 3, after=schedules.ReduceLROnPlateau(o)), TypeError),
        (lambda o: schedules.WarmupLR(o, 3, after=lambda t: 1.0), TypeError),
        (lambda o: schedules.StepLR(o, step_size=2, last_epoch=-2), ValueError),
        (lambda o: schedules.ReduceLROnPlateau(o, mode="up"), ValueError),
        (lambda o: schedules.ReduceLROnPlateau(o, threshold_mode="pct"), ValueError),
        (lambda o: schedules.ReduceLROnPlateau(o, factor=1.0), ValueError),
        (lambda o: schedules.ReduceLROnPlateau(o, patience=-1), ValueError),
        (lambda o: schedules.ReduceLROnPlateau(o, min_lr=[0.0]), ValueError),
        (lambda o: schedules.StepLR(object(), step_size=2), TypeError),
        (lambda o: schedules.ReduceLROnPlateau([0.1]), TypeError),
    ],
)
def test_invalid_arguments_raise(opt, make, error):
    with pytest.raises(error):
        make(opt)


def test_warmup_after_must_share_the_optimizer(opt):
    other = optim.SGD([Parameter(np.ones(2))], lr=0.1)
    with pytest.raises(ValueError, match="same optimizer"):
        schedules.WarmupLR(opt, 3, after=schedules.StepLR(other, step_size=2))

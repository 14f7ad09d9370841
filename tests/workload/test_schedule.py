"""Learning-rate schedules: closed forms, warmup, validation, and PyTorch's schedulers as a cross-check."""

from __future__ import annotations

import math

import pytest

from runner.errors import SpecError
from runner.workload.schedule import ScheduleConfig, lr_at

SPE = 5  # steps per epoch


def per_epoch(cfg: ScheduleConfig, base: float, epochs: int) -> list[float]:
    return [lr_at(cfg, base, e, 0, SPE) for e in range(epochs)]


def test_constant():
    assert set(per_epoch(ScheduleConfig(), 0.1, 4)) == {0.1}


def test_step_and_multistep_closed_forms():
    step = ScheduleConfig(name="step", step_size=3, gamma=0.5)
    assert per_epoch(step, 0.8, 7) == [0.8, 0.8, 0.8, 0.4, 0.4, 0.4, 0.2]
    multi = ScheduleConfig(name="multistep", milestones=(2, 5), gamma=0.1)
    got = per_epoch(multi, 1.0, 6)
    assert got[:2] == [1.0, 1.0] and got[2:5] == pytest.approx([0.1] * 3) and got[5] == pytest.approx(0.01)


def test_cosine_endpoints_and_midpoint():
    cos = ScheduleConfig(name="cosine", total_epochs=10, min_lr=0.01)
    assert lr_at(cos, 1.0, 0, 0, SPE) == 1.0
    assert lr_at(cos, 1.0, 5, 0, SPE) == pytest.approx(0.505)
    assert lr_at(cos, 1.0, 10, 0, SPE) == pytest.approx(0.01)  # clipped past the end
    # epoch granularity holds the value through the epoch; step granularity moves within it
    assert lr_at(cos, 1.0, 5, 4, SPE) == lr_at(cos, 1.0, 5, 0, SPE)
    per_step = ScheduleConfig(name="cosine", total_epochs=10, granularity="step")
    assert lr_at(per_step, 1.0, 5, 4, SPE) < lr_at(per_step, 1.0, 5, 0, SPE)


def test_linear_warmup_then_schedule():
    cfg = ScheduleConfig(name="cosine", total_epochs=6, warmup_epochs=2)
    warm = [lr_at(cfg, 0.5, e, s, SPE) for e in range(2) for s in range(SPE)]
    assert warm == pytest.approx([0.5 * (k + 1) / (2 * SPE) for k in range(2 * SPE)])
    assert lr_at(cfg, 0.5, 2, 0, SPE) == 0.5  # the cosine starts where the warmup ends
    assert lr_at(cfg, 0.5, 4, 0, SPE) == pytest.approx(0.25)
    # step_size and milestones count from the start of training, warmup included
    step = ScheduleConfig(name="step", step_size=3, warmup_epochs=1)
    assert [lr_at(step, 1.0, e, 0, SPE) for e in (1, 2, 3)] == [1.0, 1.0, pytest.approx(0.1)]


def test_bad_position_is_a_programming_error():
    with pytest.raises(ValueError):
        lr_at(ScheduleConfig(), 0.1, 0, SPE, SPE)


RUN_JSON_SCHEDULE = {  # what the spec's Schedule model dumps into run.json
    "name": "multistep", "step_size": None, "gamma": 0.1, "milestones": [30, 60], "warmup_epochs": 0,
    "min_lr": 0.0,
}


def test_from_dict_reads_the_run_json_section():
    cfg = ScheduleConfig.from_dict(RUN_JSON_SCHEDULE)
    assert cfg.milestones == (30, 60)
    assert ScheduleConfig.from_dict(cfg.to_dict()) == cfg
    cos = ScheduleConfig.from_dict(RUN_JSON_SCHEDULE | {"name": "cosine"}, total_epochs=90)
    assert cos.total_epochs == 90


@pytest.mark.parametrize(
    "change, field",
    [
        ({"power": 2}, "schedule.power"),
        ({"name": "poly"}, "schedule.name"),
        ({"name": "step"}, "schedule.step_size"),
        ({"milestones": [60, 30]}, "schedule.milestones"),
        ({"name": "cosine"}, "schedule.total_epochs"),
        ({"gamma": 0.0}, "schedule.gamma"),
        ({"warmup_epochs": -1}, "schedule.warmup_epochs"),
    ],
)
def test_bad_schedules_name_the_field(change, field):
    with pytest.raises(SpecError) as err:
        ScheduleConfig.from_dict(RUN_JSON_SCHEDULE | change, source="run.json")
    assert err.value.field == field and err.value.file == "run.json"


@pytest.mark.torch
def test_same_values_as_pytorch_schedulers_stepped_per_epoch(torch_mod):
    torch = torch_mod
    cases = [
        (ScheduleConfig(name="step", step_size=3, gamma=0.5),
         lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5)),
        (ScheduleConfig(name="multistep", milestones=(2, 5, 6), gamma=0.3),
         lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[2, 5, 6], gamma=0.3)),
        (ScheduleConfig(name="cosine", total_epochs=9, min_lr=0.001),
         lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=9, eta_min=0.001)),
    ]
    for cfg, make in cases:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.2)
        sched = make(opt)
        theirs = []
        for _ in range(10):
            theirs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        ours = per_epoch(cfg, 0.2, 10)
        assert ours[:10] == pytest.approx(theirs, rel=1e-9, abs=1e-12), cfg.name
    assert math.isclose(per_epoch(ScheduleConfig(name="cosine", total_epochs=9), 0.2, 10)[9], 0.0, abs_tol=1e-15)

"""The fused Pyro optimizer takes the steps of Pyro's per-parameter optimizers (float64, to
1e-12), checkpoints as they do, works with fit's compiled fast path, and refuses bad input."""

import copy

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoMultivariateNormal, AutoNormal
from pyro.optim.clipped_adam import ClippedAdam

import pyrodiv
from pyrodiv.divergences.compiled import Program, compile
from pyrodiv.inference.fit import _elementwise, fit
from pyrodiv.optim import Fused, FusedAdam

Y = torch.tensor([0.8, 1.9, 1.2, 0.3, 1.5, 2.2])
TOL = 1e-12  # float64: the two optimizers differ by rounding only


def model(y, step):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    sigma = pyro.sample("sigma", dist.LogNormal(0.0, 1.0))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Normal(mu, sigma), obs=y)


def guide(y, step):
    """Five parameters: ``unused`` (always in the trace, never a gradient), ``late`` (first
    seen at step 3, then in every other step's trace only: absent steps must not move it,
    although its zeroed gradient is still there)."""
    loc = pyro.param("loc", torch.tensor(0.0))
    scale = pyro.param("scale", torch.tensor(1.0), constraint=dist.constraints.positive)
    pyro.param("unused", torch.zeros(3))
    s_loc = pyro.param("s_loc", torch.tensor(0.0))
    if step >= 3 and step % 2:
        s_loc = s_loc + pyro.param("late", torch.full((2,), 0.1)).sum()
    pyro.sample("mu", dist.Normal(loc, scale))
    pyro.sample("sigma", dist.LogNormal(s_loc, 0.5))


def rates(name):
    """Per-parameter arguments: two groups."""
    return {"lr": 0.1 if name in ("loc", "late") else 0.03, "betas": (0.8, 0.99)}


def params():
    return {k: v.detach().clone() for k, v in pyro.get_param_store().items()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=TOL), k


def train(optim, steps=12, start=0, seed=0, clear=True):
    if clear:
        pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    svi = SVI(model, guide, optim, loss=Trace_ELBO())
    for step in range(start, start + steps):
        svi.step(Y, step)
    return params()


def test_same_steps_as_pyro_adam_with_per_parameter_args_late_and_gradless_parameters():
    fused = FusedAdam(rates)
    ref, got = train(pyro.optim.Adam(rates)), train(fused)
    assert_same(got, ref)
    assert not torch.equal(ref["late"], torch.full((2,), 0.1))  # it did train
    assert torch.equal(ref["unused"], torch.zeros(3))
    assert len(fused._optimizer.param_groups) == 2  # one optimizer, one group per lr
    assert all(g["fused"] for g in fused._optimizer.param_groups)  # torch's fused kernel
    for obj in fused.optim_objs.values():  # each parameter's view: its own arguments
        assert obj.param_groups[0]["fused"] is None and obj.param_groups[0]["foreach"] is None


@pytest.mark.parametrize(
    "constructor, args, mode",
    [
        (torch.optim.Adam, {"lr": 0.1, "foreach": False}, {"foreach": False, "fused": None}),
        (torch.optim.RMSprop, {"lr": 0.01}, {"foreach": True}),
        (ClippedAdam, {"lr": 0.1}, {}),
    ],
)
def test_the_groups_run_foreach_where_there_is_no_fused_kernel_or_as_asked(
    constructor, args, mode
):
    optim = Fused(constructor, args)
    ref = train(pyro.optim.PyroOptim(constructor, args))
    assert_same(train(optim), ref)
    (group,) = optim._optimizer.param_groups
    assert {k: group[k] for k in mode} == mode


def test_choosing_foreach_through_a_view_runs_that_parameter_so():
    out = []
    for optim in (pyro.optim.Adam({"lr": 0.1}), FusedAdam({"lr": 0.1})):
        train(optim, steps=4)
        for p, obj in optim.optim_objs.items():
            if pyro.get_param_store().param_name(p) == "loc":
                obj.param_groups[0]["foreach"] = False
        out.append(train(optim, steps=4, start=4, seed=1, clear=False))
    assert_same(out[1], out[0])
    modes = sorted(str((g["foreach"], g["fused"])) for g in optim._optimizer.param_groups)
    assert modes == ["(False, None)", "(None, True)"]


@pytest.mark.parametrize(
    "constructor, args",
    [
        (torch.optim.SGD, {"lr": 0.002, "momentum": 0.9}),
        (torch.optim.AdamW, {"lr": 0.05, "weight_decay": 0.1}),
        (torch.optim.RMSprop, {"lr": 0.01}),
        (ClippedAdam, {"lr": 0.05, "lrd": 0.97, "clip_norm": 0.5}),
    ],
)
def test_same_steps_as_pyro_for_other_elementwise_optimizers(constructor, args):
    ref = train(pyro.optim.PyroOptim(constructor, args))
    assert_same(train(Fused(constructor, args)), ref)


def test_same_steps_with_gradient_clipping():
    clip = {"clip_norm": 0.2}
    ref = train(pyro.optim.PyroOptim(torch.optim.Adam, rates, clip))
    assert_same(train(Fused(torch.optim.Adam, rates, clip)), ref)


def test_a_learning_rate_set_through_optim_objs_reaches_that_parameter_only():
    out = []
    for optim in (pyro.optim.Adam(rates), FusedAdam(rates)):
        train(optim, steps=6)
        for p, obj in optim.optim_objs.items():
            if pyro.get_param_store().param_name(p) == "scale":
                obj.param_groups[0]["lr"] = 0.2
        out.append(train(optim, steps=6, start=6, seed=1, clear=False))
    assert_same(out[1], out[0])


def test_compiled_reverse_kl_with_autonormal_takes_adams_steps():
    out = []
    for optim in (pyro.optim.Adam({"lr": 0.05}), FusedAdam({"lr": 0.05})):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        loss = compile(pyrodiv.ReverseKL(num_particles=8, vectorize_particles=True))
        svi = SVI(model, AutoNormal(model), optim, loss=loss)
        for _ in range(20):
            svi.step(Y, 0)
        out.append(params())
    assert_same(out[1], out[0])


def test_checkpoints_round_trip_and_load_across_pyro_adam(tmp_path):
    """Save the param store and the optimizer after 5 steps, train 5 more: a fresh optimizer
    loaded from the files takes the same 5 steps, whichever of the two saved or loads."""
    reference = {}
    for kind, make in (("pyro", pyro.optim.Adam), ("fused", FusedAdam)):
        optim = make(rates)
        train(optim, steps=5)
        pyro.get_param_store().save(tmp_path / f"{kind}.params")
        optim.save(tmp_path / f"{kind}.optim")
        reference[kind] = train(optim, steps=5, start=5, seed=1, clear=False)
    assert_same(reference["fused"], reference["pyro"])
    for saved in ("pyro", "fused"):
        for make in (pyro.optim.Adam, FusedAdam):
            pyro.clear_param_store()
            pyro.get_param_store().load(tmp_path / f"{saved}.params")
            optim = make({"lr": 0.5})  # the saved per-parameter arguments win, as in Pyro
            optim.load(tmp_path / f"{saved}.optim")
            assert_same(train(optim, steps=5, start=5, seed=1, clear=False), reference[saved])


def test_get_state_has_pyros_per_parameter_format():
    states = []
    for optim in (pyro.optim.Adam(rates), FusedAdam(rates)):
        train(optim, steps=5)
        states.append(optim.get_state())
    ref, got = states[0]["loc"], states[1]["loc"]
    assert states[0].keys() == states[1].keys()
    assert got["param_groups"][0]["lr"] == ref["param_groups"][0]["lr"] == 0.1
    assert int(got["state"][0]["step"]) == int(ref["state"][0]["step"]) == 5
    assert torch.allclose(got["state"][0]["exp_avg"], ref["state"][0]["exp_avg"], atol=TOL)


def _fit_then_svi(make, compile_option, waiting=None):
    """40 fit steps (lr scaled by 0.2 at step 20 through optim_objs), then 10 SVI steps."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = AutoMultivariateNormal(model)
    optim = make({"lr": 0.05})
    if waiting is not None:
        optim.set_state(copy.deepcopy(waiting))  # loading shares the saved state's tensors

    def callback(step, value):
        if step == 20:
            for obj in optim.optim_objs.values():
                obj.param_groups[0]["lr"] *= 0.2

    loss = pyrodiv.ForwardKL(num_particles=16, vectorize_particles=True)
    fit(model, guide, Y, 0, loss=loss, optim=optim, num_steps=40, progress=False,
        compile=compile_option, callback=callback)  # fmt: skip
    fitted = params()
    lowered = any(isinstance(p, Program) for p in loss.__dict__.get("_programs", {}).values())
    pyro.set_rng_seed(1)
    svi = SVI(model, guide, optim, loss=pyrodiv.ReverseKL())
    for _ in range(10):
        svi.step(Y, 0)
    return fitted, params(), optim, lowered


def test_fit_takes_its_fast_path_with_the_fused_optimizer_and_hands_the_state_back():
    assert _elementwise(FusedAdam({"lr": 0.05}))
    fitted, continued, optim, lowered = _fit_then_svi(FusedAdam, "auto")
    ref_fitted, ref_continued, _, _ = _fit_then_svi(pyro.optim.Adam, False)
    assert lowered  # the compiled fast path ran
    assert_same(fitted, ref_fitted)
    assert_same(continued, ref_continued)
    assert all(int(s["state"][0]["step"]) == 50 for s in optim.get_state().values())


def test_fit_falls_back_to_svi_while_a_loaded_state_waits():
    _, _, trained, _ = _fit_then_svi(pyro.optim.Adam, False)
    waiting = trained.get_state()
    fused = FusedAdam({"lr": 0.05})
    fused.set_state(copy.deepcopy(waiting))
    assert not _elementwise(fused)  # fit's fast path declines: the SVI loop consumes it
    got = _fit_then_svi(FusedAdam, "auto", waiting)
    ref = _fit_then_svi(pyro.optim.Adam, False, waiting)
    assert not got[3]
    assert_same(got[0], ref[0])
    assert_same(got[1], ref[1])


def test_bad_input_is_refused_by_name():
    with pytest.raises(TypeError, match="optim_constructor.*LBFGS"):
        Fused(torch.optim.LBFGS, {"lr": 1.0})
    with pytest.raises(TypeError, match="torch.optim.Adam, not a wrapper"):
        Fused(pyro.optim.Adam, {"lr": 1.0})
    with pytest.raises(TypeError, match="Pyro optimizer instance"):
        Fused(pyro.optim.Adam({"lr": 1.0}), {"lr": 1.0})
    with pytest.raises(TypeError, match="optim_args"):
        FusedAdam([0.01])
    with pytest.raises(ValueError, match="optim_args.*refused by Adam"):
        FusedAdam({"lr": -1.0})
    with pytest.raises(ValueError, match="optim_args"):
        FusedAdam({"learning_rate": 0.01})
    optim = FusedAdam({"lr": 0.1})
    train(optim, steps=1)
    slot = next(iter(optim.optim_objs.values()))
    with pytest.raises(RuntimeError, match="not stepped alone"):
        slot.step()
    with pytest.raises(TypeError, match="params"):
        slot.param_groups[0]["params"] = []


def test_the_public_name():
    assert pyrodiv.FusedAdam is FusedAdam

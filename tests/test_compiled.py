"""The compiled path gives the uncompiled loss's value and gradient at the same draws, trains
as SVI does, and falls back (with one warning) where a program does not lower."""

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import (
    AutoDiagonalNormal,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)

import pyrodiv
from pyrodiv.divergences.compiled import Program, compile, program
from pyrodiv.divergences.generators import GENERATOR_NAMES
from pyrodiv.divergences.losses import LOSSES
from pyrodiv.inference.fit import fit
from pyrodiv.inference.flow_guide import AutoWhitenedFlow
from pyrodiv.inference.warm_start import AutoWhitenedNormal

Y = torch.tensor([0.8, 1.9, 1.2, 0.3, 1.5, 2.2])


def posterior_model(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    sigma = pyro.sample("sigma", dist.HalfNormal(1.0))  # a constrained site: a Jacobian
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Normal(mu, sigma), obs=y)


def prior_model():
    pyro.sample("a", dist.Normal(1.0, 2.0))
    with pyro.plate("p", 3):
        pyro.sample("b", dist.Gamma(2.0, 1.0))


#: Every loss of get_loss's catalogue that needs densities only (not draws of P).
NAMES = [n for n in LOSSES if n not in ("cross_entropy", "wasserstein")] + list(GENERATOR_NAMES)
#: Those whose prior-target plan runs the guide first (forward KL and Jensen-Shannon draw
#: from the model there, which is not lowered).
PRIOR_NAMES = [n for n in NAMES if n not in ("forward_kl", "jensen_shannon")]


def make(name, **kw):
    return pyrodiv.get_loss(name, **kw)


def value_and_grads(loss, model, guide, args, seed):
    pyro.set_rng_seed(seed)
    surrogate = loss.differentiable_loss(model, guide, *args)
    names = sorted(pyro.get_param_store().keys())
    params = [pyro.get_param_store()._params[n] for n in names]
    return surrogate.detach(), torch.autograd.grad(surrogate, params)


def assert_same(loss_a, loss_b, model, guide, args, seeds=(1, 2)):
    for seed in seeds:
        value, grads = value_and_grads(loss_a, model, guide, args, seed)
        other, other_grads = value_and_grads(loss_b, model, guide, args, seed)
        assert torch.allclose(other, value, rtol=1e-10, atol=1e-12)
        for a, b in zip(other_grads, grads, strict=True):
            assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)


def is_lowered(loss) -> bool:
    return any(isinstance(p, Program) for p in loss.__dict__.get("_programs", {}).values())


def set_up(guide, *args):
    guide(*args)  # create the parameters before the first step, as both losses will see them
    return guide


@pytest.mark.parametrize("name", NAMES)
def test_every_loss_lowers_on_a_posterior_with_the_uncompiled_value_and_gradient(name):
    guide = set_up(AutoNormal(posterior_model, init_scale=0.5), Y)
    kw = {"num_particles": 8, "vectorize_particles": True}
    eager, compiled = make(name, **kw), compile(make(name, **kw))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no fallback note
        assert_same(eager, compiled, posterior_model, guide, (Y,))
    assert is_lowered(compiled)
    pyro.set_rng_seed(5)
    value = eager.loss(posterior_model, guide, Y)
    pyro.set_rng_seed(5)
    assert compiled.loss(posterior_model, guide, Y) == pytest.approx(value, rel=1e-10)


@pytest.mark.parametrize("name", PRIOR_NAMES)
def test_every_guide_first_loss_lowers_on_a_prior_target(name):
    guide = set_up(AutoMultivariateNormal(prior_model, init_scale=0.5))
    kw = {"num_particles": 8, "vectorize_particles": True}
    eager, compiled = make(name, **kw), compile(make(name, **kw))
    assert_same(eager, compiled, prior_model, guide, ())
    assert is_lowered(compiled)


@pytest.mark.parametrize(
    "make_guide",
    [
        AutoNormal,
        AutoDiagonalNormal,
        AutoMultivariateNormal,
        lambda model: AutoLowRankMultivariateNormal(model, rank=1),
        AutoWhitenedNormal,
    ],
)
@pytest.mark.parametrize("name", ["reverse_kl", "forward_kl"])
@pytest.mark.parametrize("particles", [1, 16])
def test_every_gaussian_autoguide_lowers(make_guide, name, particles):
    guide = set_up(make_guide(posterior_model), Y)
    kw = {"num_particles": particles, "vectorize_particles": True}
    eager, compiled = make(name, **kw), compile(make(name, **kw))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # forward KL's one-particle note
        assert_same(eager, compiled, posterior_model, guide, (Y,))
    assert is_lowered(compiled)


def test_a_new_whitening_and_new_data_are_inputs_not_frozen_constants():
    guide = set_up(AutoWhitenedNormal(posterior_model), Y)
    kw = {"num_particles": 8, "vectorize_particles": True}
    eager, compiled = pyrodiv.ReverseKL(**kw), compile(pyrodiv.ReverseKL(**kw))
    assert_same(eager, compiled, posterior_model, guide, (Y,), seeds=(1,))
    guide.set_whitening(torch.tensor([1.0, -0.5]), torch.tensor([[0.4, 0.0], [0.1, 0.3]]))
    assert_same(eager, compiled, posterior_model, guide, (2.0 * Y,), seeds=(3,))
    assert len(compiled._programs) == 1  # one recorded graph served both


def test_data_given_by_keyword_is_an_input():
    def model(y=None):
        posterior_model(y)

    guide = set_up(AutoNormal(model), Y)
    kw = {"num_particles": 4, "vectorize_particles": True}
    eager, compiled = pyrodiv.ForwardKL(**kw), compile(pyrodiv.ForwardKL(**kw))
    for y in (Y, Y + 1.0):
        for loss in (eager, compiled):
            pyro.set_rng_seed(0)
            loss.loss(model, guide, y=y)
        pyro.set_rng_seed(0)
        want = eager.loss(model, guide, y=y)
        pyro.set_rng_seed(0)
        assert compiled.loss(model, guide, y=y) == pytest.approx(want, rel=1e-10)


def custom_guide(y):
    loc = pyro.param("loc", torch.tensor(0.5))
    pyro.sample("mu", dist.Normal(loc, 1.0))
    pyro.sample("sigma", dist.LogNormal(pyro.param("s", torch.tensor(0.0)), 0.5))


def subsampled_model(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    with pyro.plate("data", y.shape[0], subsample_size=3) as idx:
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y[idx])


def dynamic_model(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    scale = 1.0 if float(mu.detach()) > 0 else 3.0  # the structure depends on the value drawn
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Normal(mu, scale), obs=y)


def enumerated_model(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    k = pyro.sample("k", dist.Bernoulli(0.3), infer={"enumerate": "parallel"})
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Normal(mu + k, 1.0), obs=y)


FALLBACKS = {
    # case: (model, guide factory, args, loss factory, reason in the note)
    "custom guide": (
        posterior_model,
        lambda m: custom_guide,
        (Y,),
        lambda: pyrodiv.ReverseKL(num_particles=4, vectorize_particles=True),
        "not a Gaussian autoguide",
    ),
    "model first": (
        prior_model,
        AutoNormal,
        (),
        lambda: pyrodiv.ForwardKL(num_particles=4, vectorize_particles=True),
        "model first",
    ),
    "sequential": (
        posterior_model,
        AutoNormal,
        (Y,),
        lambda: pyrodiv.ReverseKL(num_particles=3),
        "sequential",
    ),
    "subsampled": (
        subsampled_model,
        AutoNormal,
        (Y,),
        lambda: pyrodiv.ReverseKL(num_particles=4, vectorize_particles=True),
        "subsampled",
    ),
    "enumerated": (
        enumerated_model,
        lambda m: AutoNormal(pyro.poutine.block(m, hide=["k"])),
        (Y,),
        lambda: pyrodiv.ReverseKL(num_particles=4, vectorize_particles=True, max_plate_nesting=1),
        "enumerated",
    ),
    "dynamic": (
        dynamic_model,
        AutoNormal,
        (Y,),
        lambda: pyrodiv.ReverseKL(num_particles=1),
        "dynamic program",
    ),
    "score climbing": (
        posterior_model,
        AutoNormal,
        (Y,),
        lambda: pyrodiv.ForwardKL(num_particles=4, vectorize_particles=True, estimator="msc"),
        "retained particle",
    ),
}


@pytest.mark.filterwarnings("ignore:Found vars in model but not guide")
@pytest.mark.parametrize("case", list(FALLBACKS))
def test_a_program_that_does_not_lower_falls_back_with_one_note(case):
    model, make_guide, args, make_loss, reason = FALLBACKS[case]
    guide = make_guide(model)
    pyro.set_rng_seed(7)  # the dynamic model's fresh draw takes the other branch
    set_up(guide, *args)
    eager, compiled = make_loss(), compile(make_loss())
    pyro.set_rng_seed(0)  # the same first call for both (score climbing keeps a state)
    eager.loss(model, guide, *args)
    pyro.set_rng_seed(0)
    with pytest.warns(UserWarning, match=f"pyrodiv.compile: .*not lowered .*{reason}"):
        compiled.loss(model, guide, *args)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="pyrodiv.compile")  # said once
        for seed in (1, 2):
            pyro.set_rng_seed(seed)
            want = eager.loss(model, guide, *args)
            pyro.set_rng_seed(seed)
            assert compiled.loss(model, guide, *args) == pytest.approx(want, rel=1e-10)
        values = []
        for loss in (eager, compiled):  # an SVI step's entry point falls back too
            pyro.set_rng_seed(4)
            loss.loss_and_grads(model, guide, *args)  # pyrodiv.jit records its grad graph
            pyro.set_rng_seed(3)
            values.append(loss.loss_and_grads(model, guide, *args))
        assert values[1] == pytest.approx(values[0], rel=1e-10)
    assert not is_lowered(compiled)


def test_compile_needs_a_pyrodiv_loss_and_a_known_backend():
    with pytest.raises(TypeError, match="DivergenceLoss"):
        compile(pyro.infer.Trace_ELBO())
    with pytest.raises(ValueError, match="backend"):
        compile(pyrodiv.ReverseKL(), backend="xla")
    with pytest.raises(ValueError, match="compile must be one of"):
        pyrodiv.FitSettings(compile="fast")


def test_svi_with_a_compiled_loss_takes_the_uncompiled_steps():
    params = []
    for loss in (pyrodiv.JensenShannon, lambda **kw: compile(pyrodiv.JensenShannon(**kw))):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        guide = AutoNormal(posterior_model)
        svi = pyro.infer.SVI(
            posterior_model,
            guide,
            pyro.optim.Adam({"lr": 0.05}),
            loss=loss(num_particles=16, vectorize_particles=True),
        )
        for _ in range(30):
            svi.step(Y)
        programs = svi.loss.__dict__.get("_programs", {}).values()
        assert not programs or any(getattr(p, "joint", None) is not None for p in programs)
        params.append({k: v.detach().clone() for k, v in pyro.get_param_store().items()})
    assert params[0].keys() == params[1].keys()
    for k in params[0]:
        assert torch.allclose(params[1][k], params[0][k], rtol=1e-10, atol=1e-12)


def _rates(name):
    """Per-parameter learning rates (as approximate gives the off-diagonal factor its own)."""
    return {"lr": 0.02 if name.endswith("scale_tril") else 0.05}


def _decay(step, value, optim):
    """A callback that scales each parameter's learning rate through the Pyro optimizer (as
    approximate's monitor does)."""
    if step == 40:
        for optimizer in optim.optim_objs.values():
            for group in optimizer.param_groups:
                group["lr"] *= 0.2


def _fit_then_svi(compile_option, steps=80):
    """``steps`` of fit (lr 0.05, then 0.01 from step 40 by the callback), then 10 SVI steps
    with the same Pyro optimizer: the callback's record, the parameters after the fit and
    after the SVI steps, and whether the loss was lowered."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = AutoMultivariateNormal(posterior_model)
    optim = pyro.optim.Adam(_rates)
    seen = []

    def record(step, value):
        seen.append((step, value))
        _decay(step, value, optim)

    loss = pyrodiv.ForwardKL(num_particles=32, vectorize_particles=True)
    options = {"num_steps": steps, "progress": False, "compile": compile_option}
    fit(posterior_model, guide, Y, loss=loss, optim=optim, callback=record, **options)
    fitted = torch.cat([v.detach().reshape(-1) for v in guide.parameters()])
    # Pyro's per-parameter optimizers are back, with the state of every step and the new lr
    assert len({id(o) for o in optim.optim_objs.values()}) == len(optim.optim_objs) == 3
    for o in optim.optim_objs.values():
        (p,) = o.param_groups[0]["params"]
        lr = 0.2 * _rates(pyro.get_param_store().param_name(p))["lr"]
        assert int(o.state[p]["step"]) == steps and o.param_groups[0]["lr"] == pytest.approx(lr)
    pyro.set_rng_seed(1)
    svi = pyro.infer.SVI(posterior_model, guide, optim, loss=pyrodiv.ReverseKL())
    for _ in range(10):
        svi.step(Y)
    continued = torch.cat([v.detach().reshape(-1) for v in guide.parameters()])
    return seen, fitted, continued, is_lowered(loss)


def test_fit_fast_path_ends_at_svi_parameters_and_hands_back_the_optimizer_state():
    fast, slow = _fit_then_svi("auto"), _fit_then_svi(False)
    assert fast[3] and not slow[3]
    assert [step for step, _ in fast[0]] == list(range(1, 81))  # the callback saw each step
    seen = torch.tensor([value for _, value in fast[0]])
    assert torch.allclose(seen, torch.tensor([value for _, value in slow[0]]), rtol=1e-10)
    assert torch.allclose(fast[1], slow[1], rtol=1e-10, atol=1e-12)
    assert torch.allclose(fast[2], slow[2], rtol=1e-10, atol=1e-12)


def test_fit_keeps_the_svi_loop_where_the_optimizer_is_not_elementwise():
    clipped = pyro.optim.PyroOptim(torch.optim.Adam, {"lr": 0.05}, {"clip_norm": 1.0})
    pyro.set_rng_seed(0)
    guide = AutoNormal(posterior_model)
    loss = pyrodiv.ReverseKL(num_particles=8, vectorize_particles=True)
    result = fit(posterior_model, guide, Y, loss=loss, optim=clipped, num_steps=5, progress=False)
    assert result.num_steps == 5 and not is_lowered(loss)


def test_a_bound_watch_still_sees_every_training_step():
    guide = set_up(AutoNormal(posterior_model), Y)
    loss = compile(pyrodiv.CUBO(num_particles=8, vectorize_particles=True))
    for _ in range(3):
        loss.differentiable_loss(posterior_model, guide, Y)
    loss.loss(posterior_model, guide, Y)  # an evaluation: not a training step
    assert is_lowered(loss) and loss.watch.steps == 3


@pytest.mark.parametrize("through", ["svi", "fit"])
def test_a_bound_watch_sees_the_bound_not_the_reported_divergence(through):
    """Pearson reports its f-divergence but is trained by its Renyi bound of order 2, which
    its runaway watch reads (with the ELBO of the same particles). At a seed, the compiled
    step (SVI with the compiled loss, or fit's joint graph) gives the watch exactly what the
    uncompiled step gives it."""
    seen = {}
    for compiled in (False, True):
        pyro.clear_param_store()
        guide = set_up(AutoNormal(posterior_model), Y)
        loss = make("pearson", num_particles=8, vectorize_particles=True)
        if compiled and through == "svi":
            loss = compile(loss)
        pyro.set_rng_seed(3)
        if through == "svi":
            loss.loss_and_grads(posterior_model, guide, Y)
        else:
            optim = pyro.optim.Adam({"lr": 0.01})
            fit(posterior_model, guide, Y, loss=loss, optim=optim, num_steps=1,
                progress=False, compile="auto" if compiled else False)  # fmt: skip
        seen[compiled] = (loss.watch.bound, loss.watch.elbo, loss.watch.steps)
    assert seen[True][2] == seen[False][2] == 1
    assert seen[True][0] == pytest.approx(seen[False][0], rel=1e-10)
    assert seen[True][1] == pytest.approx(seen[False][1], rel=1e-10)


def test_the_inductor_backend_agrees_with_the_uncompiled_loss():
    guide = set_up(AutoNormal(posterior_model), Y)
    kw = {"num_particles": 8, "vectorize_particles": True}
    found = program(pyrodiv.ReverseKL(**kw), posterior_model, guide, (Y,), {}, "inductor")
    assert found.backend == "inductor"
    eager = pyrodiv.ReverseKL(**kw)
    value, grads = value_and_grads(eager, posterior_model, guide, (Y,), 4)
    pyro.set_rng_seed(4)
    est = found((Y,), {})
    got = torch.autograd.grad(est.surrogate, found.params)
    names = sorted(pyro.get_param_store().keys())
    assert float(est.value) == pytest.approx(float(value), rel=1e-9)
    for name, g in zip(found.names, got, strict=True):
        assert torch.allclose(g, grads[names.index(name)], rtol=1e-7, atol=1e-9)


def test_a_cleared_param_store_is_read_again():
    guide = set_up(AutoNormal(posterior_model), Y)
    loss = pyrodiv.ReverseKL(num_particles=4, vectorize_particles=True)
    for _ in range(2):  # the second fit reuses the recorded graph with the new parameters
        pyro.clear_param_store()
        guide(Y)  # registers the guide's parameters again
        with torch.no_grad():
            pyro.get_param_store()._params["AutoNormal.locs.mu"].zero_()
        fit(posterior_model, guide, Y, loss=loss, num_steps=30, lr=0.1, progress=False)
        after = float(pyro.get_param_store()._params["AutoNormal.locs.mu"].detach())
        assert after > 0.5  # moved by 30 steps of 0.1 from 0 toward the posterior mean 1.3
    assert len(loss._programs) == 1


def test_fit_with_compile_true_notes_a_program_that_does_not_lower_and_trains_it():
    loss = pyrodiv.ReverseKL(num_particles=4, vectorize_particles=True)
    options = {"num_steps": 20, "lr": 0.05, "progress": False, "compile": True}
    with pytest.warns(UserWarning, match="not lowered .*not a Gaussian autoguide"):
        result = fit(posterior_model, custom_guide, Y, loss=loss, **options)
    assert result.num_steps == 20 and pyro.param("loc").item() > 0.5  # from 0.5 toward 1.3


def test_the_inductor_backend_trains_as_the_jit_backend():
    ends = []
    for backend in ("jit", "inductor"):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        guide = AutoNormal(posterior_model)
        loss = pyrodiv.JensenShannon(num_particles=8, vectorize_particles=True)
        fit(posterior_model, guide, Y, loss=loss, num_steps=25, progress=False, compile=backend)
        (found,) = loss._programs.values()
        assert found.backend == backend and found.joint is not None
        ends.append(torch.cat([v.detach().reshape(-1) for v in guide.parameters()]))
    assert torch.allclose(ends[1], ends[0], rtol=1e-8, atol=1e-10)


def flow_guide(model, *args, spread=0.05, seed=0):
    """A whitened flow guide moved off its identity start (every layer acts)."""
    guide = AutoWhitenedFlow(model)
    guide._setup_prototype(*args)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in guide.parameters():
            p.add_(spread * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return set_up(guide, *args)


@pytest.mark.parametrize(
    "name", ["reverse_kl", "forward_kl", "jensen_shannon", "squared_hellinger", "pearson"]
)
@pytest.mark.parametrize("particles", [1, 16])
def test_the_flow_guide_lowers_with_the_uncompiled_value_and_gradient(name, particles):
    """The lowered flow evaluates log q at a detached draw by Newton steps from its known
    roots; the eager loss inverts each spline by Pyro's quadratic formula. They agree to its
    rounding (about 1e-9 relative)."""
    guide = flow_guide(posterior_model, Y)
    kw = {"num_particles": particles, "vectorize_particles": True}
    eager, compiled = make(name, **kw), compile(make(name, **kw))
    for seed in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # forward KL's one-particle note
            value, grads = value_and_grads(eager, posterior_model, guide, (Y,), seed)
        other, other_grads = value_and_grads(compiled, posterior_model, guide, (Y,), seed)
        assert torch.allclose(other, value, rtol=1e-8, atol=1e-10)
        for a, b in zip(other_grads, grads, strict=True):
            assert torch.allclose(a, b, rtol=1e-6, atol=1e-8)
    assert is_lowered(compiled)


@pytest.mark.parametrize("cost", [1e-12, 1e12])
def test_a_deferred_joint_graph_gives_the_same_gradients_before_and_after(monkeypatch, cost):
    """Where recording the joint graph would cost more than JOINT_DEFER, steps run on the
    forward graph and autograd until their time adds up to it (a cost of 1e-12 s: at once
    after the first step; 1e12 s: never), with the gradients of the uncompiled loss."""
    monkeypatch.setattr(Program, "JOINT_DEFER", -1.0)  # defer whatever the cost
    monkeypatch.setattr(Program, "JOINT_COST", cost)
    guide = set_up(AutoNormal(posterior_model, init_scale=0.5), Y)
    kw = {"num_particles": 8, "vectorize_particles": True}
    loss = make("jensen_shannon", **kw)
    found = program(loss, posterior_model, guide, (Y,), {}, "jit", gradient=True)
    assert found.joint is None
    names = sorted(pyro.get_param_store().keys())
    for seed in (1, 2, 3):
        pyro.set_rng_seed(seed)
        value, grads = found.value_and_grads((Y,), {})
        want, want_grads = value_and_grads(make("jensen_shannon", **kw), posterior_model, guide,
                                           (Y,), seed)  # fmt: skip
        assert value == pytest.approx(float(want), rel=1e-10)
        by_name = dict(zip(found.names, grads, strict=True))
        for name, b in zip(names, want_grads, strict=True):
            assert torch.allclose(by_name[name], b, rtol=1e-8, atol=1e-10)
        assert (found.joint is not None) == (cost < 1)


def test_a_program_told_to_keep_its_forward_graph_never_records_the_joint(monkeypatch):
    monkeypatch.setattr(Program, "JOINT_DEFER", -1.0)
    monkeypatch.setattr(Program, "JOINT_COST", 1e-12)  # would be recorded after one step
    guide = set_up(AutoNormal(posterior_model, init_scale=0.5), Y)
    loss = make("reverse_kl", num_particles=4, vectorize_particles=True)
    found = program(loss, posterior_model, guide, (Y,), {}, "jit", gradient=True)
    found.keep_forward_graph()
    for _ in range(3):
        found.value_and_grads((Y,), {})
    assert found.joint is None

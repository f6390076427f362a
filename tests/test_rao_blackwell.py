"""Discrete guide sites sampled, not enumerated: ReverseKL's score-function gradient is
TraceGraph_ELBO's (per site and plate slice, with its baselines), exactly; and on a
two-cluster mixture with one sampled assignment per data point it separates the clusters as
TraceGraph_ELBO does.
"""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, TraceGraph_ELBO
from pyro.ops.indexing import Vindex

import pyrodiv

_F64 = {"dtype": torch.float64}
_GEN = torch.Generator().manual_seed(0)
DATA = torch.cat(
    [
        torch.randn(50, generator=_GEN, **_F64) * 0.5 - 3,
        torch.randn(50, generator=_GEN, **_F64) * 0.5 + 3,
    ]
)
TRUTH = torch.cat([torch.zeros(50), torch.ones(50)]).long()


def model(data):
    locs = pyro.sample("locs", dist.Normal(0.0, 10.0).expand([2]).to_event(1))
    with pyro.plate("data", len(data)):
        k = pyro.sample("k", dist.Categorical(data.new_tensor([0.5, 0.5])))
        pyro.sample("obs", dist.Normal(Vindex(locs)[..., k], 0.5), obs=data)


def make_guide(baseline=None):
    infer = {"baseline": baseline} if baseline else {}

    def guide(data):
        loc = pyro.param("loc", data.new_tensor([-0.5, 0.5]))
        logits = pyro.param("logits", data.new_zeros(len(data), 2))
        pyro.sample("locs", dist.Normal(loc, 0.1).to_event(1))
        with pyro.plate("data", len(data)):
            pyro.sample("k", dist.Categorical(logits=logits), infer=infer)

    return guide


def _second_step(loss, guide):
    """The loss and gradients of the second step (the baselines' state carried over)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(1)
    loss.loss_and_grads(model, guide, DATA)
    params = list(pyro.get_param_store().values())
    for p in params:
        p.unconstrained().grad = None
    pyro.set_rng_seed(2)
    value = loss.loss_and_grads(model, guide, DATA)
    names = sorted(pyro.get_param_store().keys())
    return value, {n: pyro.get_param_store()[n].unconstrained().grad for n in names}


@pytest.mark.parametrize("baseline", [None, {"use_decaying_avg_baseline": True}])
@pytest.mark.parametrize("vectorize", [True, False])
def test_the_gradient_is_trace_graph_elbos(vectorize, baseline):
    guide = make_guide(baseline)
    options = {"num_particles": 4, "vectorize_particles": vectorize}
    expected, expected_grads = _second_step(TraceGraph_ELBO(max_plate_nesting=1, **options), guide)
    value, grads = _second_step(pyrodiv.ReverseKL(**options), guide)
    assert value == pytest.approx(expected, rel=1e-12)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        if name.startswith("__baseline"):
            continue  # the decaying average is a buffer, not trained
        assert torch.allclose(grad, expected_grads[name], rtol=1e-10, atol=1e-10), name


def test_the_clusters_separate():
    """400 steps of 16 particles from locs (-0.5, 0.5) and uniform assignments: every point
    assigned to its own cluster, and each loc within 0.15 of its cluster's mean (posterior sd
    0.5 / sqrt(50) = 0.07, guide sd 0.1)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    loss = pyrodiv.ReverseKL(num_particles=16, vectorize_particles=True)
    svi = SVI(model, make_guide(), pyro.optim.Adam({"lr": 0.05}), loss)
    for _ in range(400):
        svi.step(DATA)
    assigned = pyro.param("logits").argmax(-1)
    accuracy = float((assigned == TRUTH).double().mean())
    assert max(accuracy, 1 - accuracy) == 1.0
    locs = pyro.param("loc").detach().sort().values
    assert torch.allclose(locs, torch.stack([DATA[:50].mean(), DATA[50:].mean()]), atol=0.15)

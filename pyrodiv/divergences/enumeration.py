r"""Discrete model sites summed out: the marginal :math:`\log p` of an enumerated model.

A latent model site marked ``infer={"enumerate": "parallel"}`` (or by ``config_enumerate``)
that the guide does not sample is summed out of the model, as ``TraceEnum_ELBO`` does: the
model runs under Pyro's ``poutine.enum``, each such site takes all its values along a dim left
of the plates (and of the particle plate), and the log-density every loss reads is the
marginal

.. math::

    \log p(z, y) = \log \sum_{k} p(k, z, y),

contracted with Pyro's tensor-message-passing (``contract_tensor_tree``): a discrete site
inside a plate is summed within each plate element (a mixture assignment per data point), one
outside it over the whole plate (a global regime). The scale of subsampling is applied after the
sum, so every enumerated site must share one scale, as in ``TraceEnum_ELBO``.

Example::

    >>> @config_enumerate
    ... def model():
    ...     k = pyro.sample("k", dist.Categorical(torch.tensor([0.3, 0.7])))
    ...     pyro.sample("z", dist.Normal(torch.tensor([-7.0, 7.0])[k], 1.0))
    >>> # every loss now sees log p(z) = log(0.3 N(z; -7, 1) + 0.7 N(z; 7, 1))
"""

from __future__ import annotations

from pyro import poutine
from pyro.infer.traceenum_elbo import _compute_model_factors
from pyro.ops import packed
from pyro.ops.contract import contract_tensor_tree

__all__ = ["enumerated_sites", "enumerate_model", "marginal_log_density", "is_enumerated"]


def enumerated_sites(model_trace, guide_trace) -> list[str]:
    """Latent model sites marked for parallel enumeration that the guide does not sample: the
    sites to sum out. Sites marked ``"sequential"`` raise a ValueError naming them."""
    names = []
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        how = site["infer"].get("enumerate")
        guide_site = guide_trace.nodes.get(name) if guide_trace is not None else None
        if not how or (guide_site is not None and guide_site["type"] == "sample"):
            continue
        if how != "parallel":
            raise ValueError(
                f"model site {name!r} is marked for {how!r} enumeration; the divergence losses "
                "sum out sites enumerated in parallel only: mark it "
                "infer={'enumerate': 'parallel'} (config_enumerate's default), or sample it "
                "in the guide"
            )
        names.append(name)
    return names


def enumerate_model(model, nesting: int, trace=None):
    """``model`` under ``poutine.enum`` with its enumeration dims left of ``nesting`` plate
    dims (the particle plate counted); replayed at ``trace`` (its enumerated sites left out)
    when given."""
    model = poutine.enum(model, first_available_dim=-nesting - 1)
    if trace is None:
        return model
    kept = trace.copy()
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and site["infer"].get("enumerate") == "parallel":
            kept.remove_node(name)
    return poutine.replay(model, trace=kept)


def is_enumerated(model_trace) -> bool:
    """Whether the model trace holds a site Pyro enumerated."""
    return any(
        site["type"] == "sample" and site["infer"].get("_enumerate_dim") is not None
        for site in model_trace.nodes.values()
    )


def marginal_log_density(model_trace, guide_trace, particle_dim: int | None, particle_plate):
    r"""Per-particle :math:`\log p` of an enumerated model trace, its enumerated sites summed
    out (log-probs computed beforehand; the traces are packed here).

    :param particle_dim: the vectorized particle plate's dim, or ``None`` (one particle).
    :param str particle_plate: the particle plate's name.
    :param guide_trace: the guide's trace (its sites are not summed out), or ``None``.
    """
    if guide_trace is None:
        guide_trace = poutine.Trace()
    model_trace.pack_tensors()
    guide_trace.pack_tensors(model_trace.plate_to_symbol)
    costs, log_factors, _, sum_dims, scale = _compute_model_factors(model_trace, guide_trace)
    terms = [term for terms in costs.values() for term in terms]
    if log_factors:
        contracted = contract_tensor_tree(log_factors, sum_dims)
        terms += [
            packed.scale_and_mask(term, scale=scale)
            for ordinal_terms in contracted.values()
            for term in ordinal_terms
        ]
    symbol = model_trace.plate_to_symbol.get(particle_plate)
    total = 0.0
    for term in terms:
        if particle_dim is not None and symbol in term._pyro_dims:
            axis = term._pyro_dims.index(symbol)
            total = total + term.movedim(axis, 0).reshape(term.shape[axis], -1).sum(1)
        else:
            total = total + term.sum()
    return total

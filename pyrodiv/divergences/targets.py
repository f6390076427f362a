r"""Kinds of target, what each gives, and targets made of draws.

A divergence between a target :math:`P` and an approximation :math:`Q` needs some of four
ingredients (the talk's "Summary of Methods"): ``log p``, ``x ~ P``, ``log q`` and ``x ~ Q``.
The guide gives ``log q`` and ``x ~ Q``. What the model gives depends on its kind:

==============  =========================================  =====================================
kind            what it is                                 gives
==============  =========================================  =====================================
``prior``       a model with no observed site and no       ``log p`` (normalized) and ``x ~ P``
                ``pyro.factor``
``posterior``   a model with observed sites or factors     ``log p`` up to :math:`\log Z`;
                                                           ``x ~ P`` only from given draws
``sample``      draws of :math:`P` only                    ``x ~ P``
                (:class:`SampleTarget`)
==============  =========================================  =====================================

:func:`require` turns a missing ingredient into a ``ValueError`` that names the divergence, the
ingredient and what to do instead. :class:`SampleTarget` makes a Pyro model of a set of draws
(a data set, MCMC draws), and :class:`SetDraws` fixes a model's latent sites to given draws, one
draw per particle, so that losses can use MCMC draws of a posterior.

Example::

    >>> draws = {"z": torch.randn(500, 2)}
    >>> target = SampleTarget(draws)
    >>> pyro.poutine.trace(target).get_trace().nodes["z"]["value"].shape
    torch.Size([2])
"""

from __future__ import annotations

from collections.abc import Mapping

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import get_plates
from torch.distributions import biject_to

#: The kinds of target a loss can be given (``"auto"``: read from the model).
TARGET_KINDS = ("prior", "posterior", "sample")
#: The four ingredients of the talk's table of methods, in its order.
INGREDIENTS = ("log p", "x ~ P", "log q", "x ~ Q")

#: The ingredients each kind of target gives by itself (the guide gives ``log q`` and ``x ~ Q``).
GIVES = {
    "prior": frozenset({"log p", "x ~ P"}),
    "posterior": frozenset({"log p"}),
    "sample": frozenset({"x ~ P"}),
}

_WHY = {
    "log p": "a sample target has draws of P but no density",
    "x ~ P": "a posterior target cannot be sampled",
}


def available(kind: str, has_draws: bool = False) -> frozenset:
    """The ingredients a target of ``kind`` gives, with ``x ~ P`` added when draws are given.

    Example::

        >>> sorted(available("posterior", has_draws=True))
        ['log p', 'x ~ P']
    """
    if kind not in GIVES:
        raise ValueError(f"unknown target kind {kind!r}; known: {', '.join(TARGET_KINDS)}")
    return GIVES[kind] | ({"x ~ P"} if has_draws else frozenset())


def require(divergence: str, needs, kind: str, has_draws: bool = False, instead: str = ""):
    """Raise a ``ValueError`` if a target of ``kind`` lacks an ingredient that ``needs`` lists.

    :param divergence: the divergence's name, for the message.
    :param needs: the ingredients of ``P`` it needs (from :data:`INGREDIENTS`).
    :param kind: ``"prior"``, ``"posterior"`` or ``"sample"``.
    :param has_draws: whether draws of ``P`` were given.
    :param instead: what to do instead, for the message.

    Example::

        >>> require("reverse KL", {"log p"}, "sample", instead="use CrossEntropy")
        Traceback (most recent call last):
        ...
        ValueError: reverse KL needs log p, which this sample target cannot give (...
    """
    missing = [x for x in INGREDIENTS if x in set(needs) - available(kind, has_draws)]
    if missing:
        what = " and ".join(missing)
        why = "; ".join(_WHY[x] for x in missing if x in _WHY)
        hint = f"; {instead}" if instead else ""
        raise ValueError(
            f"{divergence} needs {what}, which this {kind} target cannot give ({why}){hint}"
        )


def posterior_draws(idata) -> dict[str, torch.Tensor]:
    """``{variable: tensor (chains * draws, *shape)}`` from the ``posterior`` group of an
    ``arviz.InferenceData`` (e.g. from :func:`pyrodiv.run_nuts`), chains joined.

    Example::

        >>> idata = pyrodiv.run_nuts(model, y, num_samples=500)  # doctest: +SKIP
        >>> loss = pyrodiv.ForwardKL(num_particles=64, draws=posterior_draws(idata))
    """
    from ..inference import arviz_adapter

    draws = {}
    for name in arviz_adapter.var_names(idata):
        value = arviz_adapter.get_draws(idata, name)
        draws[name] = value.reshape((-1,) + tuple(value.shape[2:]))
    return draws


def _check_draws(draws) -> dict[str, torch.Tensor]:
    """Validate ``{site: tensor of shape (num_draws, *site_shape)}``; an InferenceData gives
    its posterior group (:func:`posterior_draws`)."""
    if hasattr(draws, "posterior") and not isinstance(draws, dict):
        draws = posterior_draws(draws)
    if not isinstance(draws, Mapping) or not draws:
        raise TypeError(
            "draws must be a non-empty dict {site name: tensor of shape (num_draws, ...)}, "
            f"got {type(draws).__name__}"
        )
    checked, sizes = {}, set()
    for name, value in draws.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"draws of site {name!r} must be a torch.Tensor, got {type(value)}")
        if value.dim() == 0:
            raise ValueError(f"draws of site {name!r} need a leading draw dimension")
        if value.shape[0] == 0:
            raise ValueError(f"draws of site {name!r} are empty (0 draws)")
        if not torch.isfinite(value).all():
            raise ValueError(f"draws of site {name!r} contain NaN or inf")
        checked[name] = value.detach()
        sizes.add(value.shape[0])
    if len(sizes) != 1:
        raise ValueError(f"every site needs the same number of draws, got sizes {sorted(sizes)}")
    return checked


def _batch_shape_of_plates() -> tuple[int, ...]:
    """The batch shape that the enclosing plates broadcast a site to."""
    plates = [f for f in get_plates() if f.vectorized and f.dim is not None]
    if not plates:
        return ()
    shape = [1] * -min(f.dim for f in plates)
    for frame in plates:
        shape[frame.dim] = frame.size
    return tuple(shape)


class SampleTarget:
    r"""A target known only through draws: the empirical distribution
    :math:`P = \frac1N\sum_n \delta_{x_n}` as a Pyro model.

    Each call draws one row :math:`n \sim \mathrm{Uniform}\{1..N\}` (one per particle under
    vectorized particles) and records every site of that row as a point mass, so that joint
    draws stay joint. Trailing dimensions of each tensor are the site's event dimensions.
    Losses read this model as a ``"sample"`` target: ``CrossEntropy`` and ``Wasserstein`` train
    on it, and density losses refuse it, since its ``log p`` is not a density.

    :param draws: ``{site name: tensor of shape (num_draws, *event_shape)}``.

    Example::

        >>> data = {"x": torch.randn(1000, 2) * 3.0 + 1.0}
        >>> guide = pyro.infer.autoguide.AutoNormal(SampleTarget(data))
        >>> loss = pyrodiv.CrossEntropy(num_particles=64, vectorize_particles=True)
    """

    def __init__(self, draws: Mapping[str, torch.Tensor]):
        self.draws = _check_draws(draws)
        self.num_draws = next(iter(self.draws.values())).shape[0]

    def __call__(self, *args, **kwargs):
        some = next(iter(self.draws.values()))
        index = torch.randint(self.num_draws, _batch_shape_of_plates(), device=some.device)
        return {
            name: pyro.sample(name, dist.Delta(value[index], event_dim=value.dim() - 1))
            for name, value in self.draws.items()
        }

    def __repr__(self):
        sites = ", ".join(f"{k}: {tuple(v.shape[1:])}" for k, v in self.draws.items())
        return f"SampleTarget({self.num_draws} draws of {{{sites}}})"


def is_sample_target(model) -> bool:
    """Whether ``model`` (possibly wrapped by poutine handlers) is a :class:`SampleTarget`."""
    return isinstance(poutine.unwrap(model), SampleTarget)


class SetDraws(Messenger):
    r"""Fix a model's latent sites to given draws of :math:`P`: one draw per particle.

    The draw index (a scalar, or one per particle for vectorized particles) is chosen when the
    handler is entered; each site in ``draws`` then takes that row, shaped to the site's plates:
    under the outer particle plate at ``particle_dim`` a row of shape ``site_shape`` becomes
    ``(K, 1, ..., 1, *site_shape)``. The site stays a latent (unobserved) site, so the guide
    can be replayed at it.

    :param draws: ``{site name: tensor of shape (num_draws, *site_shape)}``, or an
        ``arviz.InferenceData`` whose posterior group holds them.
    :param int num_particles: draws per run (the particle plate's size), or 1.
    :param particle_dim: the particle plate's dim (negative), or ``None`` when sequential.
    :param rows: the rows to take (``num_particles`` of them, or one when sequential);
        random rows by default.

    Example::

        >>> with SetDraws({"z": torch.arange(5.0)[:, None]}, 1, None):
        ...     z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
        >>> float(z[0]) in range(5)
        True
    """

    def __init__(self, draws, num_particles: int = 1, particle_dim: int | None = None, rows=None):
        super().__init__()
        self.draws = _check_draws(draws)
        self.num_particles = num_particles
        self.particle_dim = particle_dim
        self.rows = rows

    def __enter__(self):
        some = next(iter(self.draws.values()))
        shape = (self.num_particles,) if self.particle_dim is not None else ()
        if self.rows is not None:
            self.index = torch.as_tensor(self.rows).reshape(shape)
        else:
            self.index = torch.randint(some.shape[0], shape, device=some.device)
        self.seen, self.latent, self.missing = set(), set(), []
        return super().__enter__()

    def __exit__(self, exc_type, exc_value, traceback):
        result = super().__exit__(exc_type, exc_value, traceback)
        unused = set(self.draws) - self.latent
        if exc_type is None and unused:
            raise ValueError(
                f"draws of {sorted(unused)}: the model has no such latent site (its latent "
                f"sites: {sorted(self.latent)})"
            )
        if exc_type is None and self.missing:
            raise ValueError(
                f"draws have no values for the model's latent site {self.missing[0]!r}; give "
                "draws of every latent site (it would otherwise be drawn from its prior)"
            )
        return result

    def _pyro_sample(self, msg):
        name = msg["name"]
        self.seen.add(name)
        if msg["is_observed"] or type(msg["fn"]).__name__ == "_Subsample":
            return
        if name not in self.draws and msg["infer"].get("enumerate") == "parallel":
            return  # summed out (pyrodiv.divergences.enumeration), not a draw of P
        self.latent.add(name)
        if name not in self.draws:  # reported on exit; a feasible value lets the run finish
            self.missing.append(name)
            try:
                shape = msg["fn"].shape()
                msg["value"] = biject_to(msg["fn"].support)(torch.zeros(shape))
            except (NotImplementedError, TypeError, RuntimeError):
                raise ValueError(
                    f"draws have no values for the model's latent site {name!r}; give draws of "
                    "every latent site (it would otherwise be drawn from its prior)"
                ) from None
            msg["done"] = True
            return
        value = self.draws[name][self.index]
        site_shape = value.shape[value.dim() - self.draws[name].dim() + 1 :]
        if self.particle_dim is not None:
            batch_dims = len(site_shape) - msg["fn"].event_dim
            pad = -self.particle_dim - 1 - batch_dims
            if pad < 0:
                raise ValueError(
                    f"draws of site {name!r} have shape {tuple(site_shape)}, with more batch "
                    "dimensions than the model's plates"
                )
            value = value.reshape((self.num_particles,) + (1,) * pad + tuple(site_shape))
        expected = msg["fn"].shape()
        if value.shape != expected:
            raise ValueError(
                f"draws of site {name!r}: a draw has shape {tuple(site_shape)}, set here as "
                f"{tuple(value.shape)}, which does not fit the site's shape {tuple(expected)}"
            )
        msg["value"] = value
        msg["done"] = True

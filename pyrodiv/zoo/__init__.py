"""The model zoo: posteriordb posteriors as Pyro models, with their data and reference draws.

Each model is a plain Pyro function of its data (:mod:`pyrodiv.zoo.models`). The data and the
gold-standard reference draws are read at run time from a local posteriordb folder
(:mod:`pyrodiv.zoo.posteriordb`; never copied into the repository), and
:data:`~pyrodiv.zoo.registry.ZOO` (:mod:`pyrodiv.zoo.registry`) ties each posterior to its model.

=====================  =========================================  ==============================
short name             posteriordb posterior                      model function
=====================  =========================================  ==============================
eight_schools          eight_schools-eight_schools_noncentered    eight_schools_noncentered
kidiq                  kidiq-kidscore_momiq                       kidiq_kidscore_momiq
earnings               earnings-logearn_height                    earnings_logearn_height
mesquite               mesquite-logmesquite_logvolume             mesquite_logmesquite_logvolume
kilpisjarvi            kilpisjarvi_mod-kilpisjarvi                kilpisjarvi
nes2000                nes2000-nes                                nes2000
sblrc                  sblrc-blr                                  sblrc_blr
arK                    arK-arK                                    arK
garch                  garch-garch11                              garch11
gp_pois_regr           gp_pois_regr-gp_pois_regr                  gp_pois_regr
low_dim_gauss_mix      low_dim_gauss_mix-low_dim_gauss_mix        low_dim_gauss_mix
diamonds               diamonds-diamonds                          diamonds
=====================  =========================================  ==============================

Flat (improper) priors of the Stan programs are replaced by wide proper priors
(``Normal(0, 1000)``, ``HalfNormal(1000)``) or, on bounded intervals, by the exact ``Uniform``;
see :mod:`pyrodiv.zoo.models`. NUTS and the autoguides then work with their default
initialization.

Example::

    >>> import pyro, torch
    >>> from pyrodiv.zoo import get_model, load_reference_draws
    >>> torch.set_default_dtype(torch.float64)                         # doctest: +SKIP
    >>> model, kwargs = get_model("eight_schools")                     # doctest: +SKIP
    >>> guide = pyro.infer.autoguide.AutoNormal(model)                 # doctest: +SKIP
    >>> elbo = pyro.infer.Trace_ELBO(num_particles=8, vectorize_particles=True)
    >>> loss = elbo.loss(model, guide, **kwargs)                       # doctest: +SKIP
    >>> load_reference_draws("eight_schools")["theta"].shape           # doctest: +SKIP
    (10, 1000, 8)
"""

from .models import (
    FLAT_SCALE,
    OrderedNormal,
    arK,
    diamonds,
    earnings_logearn_height,
    eight_schools_noncentered,
    garch11,
    garch11_variance,
    gp_pois_regr,
    kidiq_kidscore_momiq,
    kilpisjarvi,
    low_dim_gauss_mix,
    mesquite_logmesquite_logvolume,
    nes2000,
    sblrc_blr,
    se_cholesky,
)
from .posteriordb import (
    ENV_VAR,
    list_posteriors,
    load_data,
    load_posterior_info,
    load_reference_draws,
    posterior_folder,
    posteriordb_path,
)
from .registry import ZOO, ZooEntry, get_entry, get_model, reference_latents

__all__ = [
    "ENV_VAR",
    "FLAT_SCALE",
    "OrderedNormal",
    "ZOO",
    "ZooEntry",
    "arK",
    "diamonds",
    "earnings_logearn_height",
    "eight_schools_noncentered",
    "garch11",
    "garch11_variance",
    "get_entry",
    "get_model",
    "gp_pois_regr",
    "kidiq_kidscore_momiq",
    "kilpisjarvi",
    "list_posteriors",
    "load_data",
    "load_posterior_info",
    "load_reference_draws",
    "low_dim_gauss_mix",
    "mesquite_logmesquite_logvolume",
    "nes2000",
    "posterior_folder",
    "posteriordb_path",
    "reference_latents",
    "sblrc_blr",
    "se_cholesky",
]

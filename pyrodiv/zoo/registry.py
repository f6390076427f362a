"""The zoo's registry: each posteriordb posterior with its Pyro model and data mapping.

:data:`ZOO` maps a short name (``"eight_schools"``, ``"kidiq"``, ...) to a :class:`ZooEntry`,
which knows the posteriordb folder, the model function, how to turn the loaded data into the
model's keyword arguments, the reference parameter names, the model's latent site names, and
how to map reference draws onto the latent sites (for example eight schools' ``theta`` to
``theta_trans``).

Example::

    >>> import pyro
    >>> from pyrodiv.zoo import get_model
    >>> model, kwargs = get_model("eight_schools")            # doctest: +SKIP
    >>> tr = pyro.poutine.trace(model).get_trace(**kwargs)    # doctest: +SKIP
    >>> tr.nodes["y"]["is_observed"]                          # doctest: +SKIP
    True
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from . import models
from .posteriordb import load_data, load_reference_draws

Kwargs = dict[str, Any]


def _real(t: Any, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(t).to(dtype)


def _identity_latents(names: tuple[str, ...]) -> Callable[[dict, Kwargs], dict]:
    def to_latents(draws: dict[str, torch.Tensor], kwargs: Kwargs) -> dict[str, torch.Tensor]:
        return {n: draws[n] for n in names}

    return to_latents


@dataclass(frozen=True)
class ZooEntry:
    """One posterior of the zoo.

    :param name: short name, the key in :data:`ZOO`.
    :param posterior: the posteriordb folder name.
    :param model: the Pyro model function.
    :param data_to_kwargs: ``(data, dtype) -> kwargs``, from the dict of
        :func:`~pyrodiv.zoo.posteriordb.load_data` to the model's keyword arguments (reals cast
        to ``dtype``).
    :param params: the reference parameter names, in the order of the reference draws.
    :param latents: the model's latent (sampled, unobserved) site names.
    :param reference_to_latents: ``(draws, kwargs) -> latents``, from reference draws (tensors
        with any leading shape) to values of the latent sites; ``None`` if the latents are
        reference parameters themselves.
    """

    name: str
    posterior: str
    model: Callable[..., Any]
    data_to_kwargs: Callable[[dict[str, Any], torch.dtype], Kwargs]
    params: tuple[str, ...]
    latents: tuple[str, ...]
    reference_to_latents: Callable[[dict[str, torch.Tensor], Kwargs], dict] | None = None

    def kwargs(self, path: str | os.PathLike | None = None, dtype: torch.dtype | None = None):
        """Load the data and return the model's keyword arguments."""
        dtype = torch.get_default_dtype() if dtype is None else dtype
        return self.data_to_kwargs(load_data(self.posterior, path, dtype), dtype)

    def reference_latents(
        self,
        path: str | os.PathLike | None = None,
        dtype: torch.dtype | None = None,
        flatten: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Reference draws as values of the model's latent sites.

        Returns tensors of shape ``(chains, draws, *site_shape)``, or
        ``(chains * draws, *site_shape)`` with ``flatten=True``. These are draws of the
        posterior P in the coordinates of the model, usable wherever a divergence needs
        ``x ~ P``.
        """
        dtype = torch.get_default_dtype() if dtype is None else dtype
        draws = {
            k: torch.as_tensor(v).to(dtype)
            for k, v in load_reference_draws(self.posterior, path).items()
        }
        kwargs = self.kwargs(path, dtype)
        fn = self.reference_to_latents or _identity_latents(self.latents)
        out = fn(draws, kwargs)
        if flatten:
            out = {k: v.reshape((-1,) + v.shape[2:]) for k, v in out.items()}
        return out


# ---------------------------------------------------------------- data mappings


def _eight_schools_kwargs(d: dict, dtype: torch.dtype) -> Kwargs:
    return {"J": int(d["J"]), "sigma": _real(d["sigma"], dtype), "y": _real(d["y"], dtype)}


def _eight_schools_latents(r: dict, kwargs: Kwargs) -> dict:
    mu, tau = r["mu"], r["tau"]
    return {"mu": mu, "tau": tau, "theta_trans": (r["theta"] - mu[..., None]) / tau[..., None]}


def _kidiq_kwargs(d: dict, dtype: torch.dtype) -> Kwargs:
    return {"mom_iq": _real(d["mom_iq"], dtype), "kid_score": _real(d["kid_score"], dtype)}


def _earnings_kwargs(d: dict, dtype: torch.dtype) -> Kwargs:
    return {"height": _real(d["height"], dtype), "earn": _real(d["earn"], dtype)}


def _mesquite_kwargs(d: dict, dtype: torch.dtype) -> Kwargs:
    keys = ("diam1", "diam2", "canopy_height", "weight")
    return {k: _real(d[k], dtype) for k in keys}


def _kilpisjarvi_kwargs(d: dict, dtype: torch.dtype) -> Kwargs:
    out: Kwargs = {k: float(d[k]) for k in ("pmualpha", "psalpha", "pmubeta", "psbeta")}
    out["x"] = _real(d["x"], dtype)
    out["y"] = _real(d["y"], dtype)
    return out


def _nes_kwargs(d: dict, dtype: torch.dtype) -> Kwargs:
    reals = ("real_ideo", "race_adj", "educ1", "gender", "income", "partyid7")
    out: Kwargs = {k: _real(d[k], dtype) for k in reals}
    out["age_discrete"] = torch.as_tensor(d["age_discrete"]).long()
    return out


def _sblrc_kwargs(d: dict, dtype: torch.dtype) -> Kwargs:
    return {"X": _real(d["X"], dtype), "y": _real(d["y"], dtype)}


def _ark_kwargs(d: dict, dtype: torch.dtype) -> Kwargs:
    y = _real(d["y"], dtype)
    if "T" in d and int(d["T"]) != y.shape[-1]:
        raise ValueError(f"arK data: T = {d['T']} but y has {y.shape[-1]} entries")
    return {"K": int(d["K"]), "y": y}


def _garch_kwargs(d: dict, dtype: torch.dtype) -> Kwargs:
    return {"y": _real(d["y"], dtype), "sigma1": float(d["sigma1"])}


def _garch_latents(r: dict, kwargs: Kwargs) -> dict:
    return {
        "mu": r["mu"],
        "alpha0": r["alpha0"],
        "alpha1": r["alpha1"],
        "beta1_raw": r["beta1"] / (1 - r["alpha1"]),
    }


def _gp_kwargs(d: dict, dtype: torch.dtype) -> Kwargs:
    return {"x": _real(d["x"], dtype), "k": _real(d["k"], dtype)}


def _gp_latents(r: dict, kwargs: Kwargs) -> dict:
    x = kwargs["x"]
    L = models.se_cholesky(x, r["alpha"][..., None], r["rho"][..., None])
    f_tilde = torch.linalg.solve_triangular(L, r["f"][..., None], upper=False)[..., 0]
    return {"rho": r["rho"], "alpha": r["alpha"], "f_tilde": f_tilde}


def _gauss_mix_kwargs(d: dict, dtype: torch.dtype) -> Kwargs:
    return {"N": int(d["N"]), "y": _real(d["y"], dtype)}


def _diamonds_kwargs(d: dict, dtype: torch.dtype) -> Kwargs:
    return {"X": _real(d["X"], dtype), "Y": _real(d["Y"], dtype)}


def _entry(name, posterior, model, to_kwargs, params, latents, to_latents=None) -> ZooEntry:
    return ZooEntry(name, posterior, model, to_kwargs, tuple(params), tuple(latents), to_latents)


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        _entry(
            "eight_schools",
            "eight_schools-eight_schools_noncentered",
            models.eight_schools_noncentered,
            _eight_schools_kwargs,
            ["theta", "mu", "tau"],
            ["mu", "tau", "theta_trans"],
            _eight_schools_latents,
        ),
        _entry(
            "kidiq",
            "kidiq-kidscore_momiq",
            models.kidiq_kidscore_momiq,
            _kidiq_kwargs,
            ["beta", "sigma"],
            ["beta", "sigma"],
        ),
        _entry(
            "earnings",
            "earnings-logearn_height",
            models.earnings_logearn_height,
            _earnings_kwargs,
            ["beta", "sigma"],
            ["beta", "sigma"],
        ),
        _entry(
            "mesquite",
            "mesquite-logmesquite_logvolume",
            models.mesquite_logmesquite_logvolume,
            _mesquite_kwargs,
            ["beta", "sigma"],
            ["beta", "sigma"],
        ),
        _entry(
            "kilpisjarvi",
            "kilpisjarvi_mod-kilpisjarvi",
            models.kilpisjarvi,
            _kilpisjarvi_kwargs,
            ["alpha", "beta", "sigma"],
            ["alpha", "beta", "sigma"],
        ),
        _entry(
            "nes2000",
            "nes2000-nes",
            models.nes2000,
            _nes_kwargs,
            ["beta", "sigma"],
            ["beta", "sigma"],
        ),
        _entry(
            "sblrc",
            "sblrc-blr",
            models.sblrc_blr,
            _sblrc_kwargs,
            ["beta", "sigma"],
            ["beta", "sigma"],
        ),
        _entry(
            "arK",
            "arK-arK",
            models.arK,
            _ark_kwargs,
            ["alpha", "beta", "sigma"],
            ["alpha", "beta", "sigma"],
        ),
        _entry(
            "garch",
            "garch-garch11",
            models.garch11,
            _garch_kwargs,
            ["mu", "alpha0", "alpha1", "beta1"],
            ["mu", "alpha0", "alpha1", "beta1_raw"],
            _garch_latents,
        ),
        _entry(
            "gp_pois_regr",
            "gp_pois_regr-gp_pois_regr",
            models.gp_pois_regr,
            _gp_kwargs,
            ["rho", "alpha", "f"],
            ["rho", "alpha", "f_tilde"],
            _gp_latents,
        ),
        _entry(
            "low_dim_gauss_mix",
            "low_dim_gauss_mix-low_dim_gauss_mix",
            models.low_dim_gauss_mix,
            _gauss_mix_kwargs,
            ["mu", "sigma", "theta"],
            ["sigma", "mu", "theta"],
        ),
        _entry(
            "diamonds",
            "diamonds-diamonds",
            models.diamonds,
            _diamonds_kwargs,
            ["b", "Intercept", "sigma"],
            ["b", "Intercept", "sigma"],
        ),
    ]
}
"""The zoo: short name -> :class:`ZooEntry`."""


def get_entry(name: str) -> ZooEntry:
    """Look up a :class:`ZooEntry` by short name, posteriordb name or model function name.

    Accepted, for example: ``"eight_schools"``, ``"eight_schools-eight_schools_noncentered"``,
    ``"eight_schools_noncentered"``. Matching ignores case.

    :raises KeyError: naming the known short names.

    Example::

        >>> get_entry("garch11").posterior
        'garch-garch11'
    """
    if name in ZOO:
        return ZOO[name]
    key = name.lower()
    for entry in ZOO.values():
        aliases = {entry.name, entry.posterior, entry.model.__name__}
        aliases.update(entry.posterior.split("-", 1))
        if key in {a.lower() for a in aliases}:
            return entry
    raise KeyError(f"unknown zoo model {name!r}; known: {sorted(ZOO)}")


def get_model(
    name: str, path: str | os.PathLike | None = None, dtype: torch.dtype | None = None
) -> tuple[Callable[..., Any], Kwargs]:
    """Return ``(model, kwargs)`` for a zoo posterior, with the data loaded from posteriordb.

    ``model(**kwargs)`` is the posterior's Pyro model conditioned on its data. Reals are in
    ``dtype`` (default :func:`torch.get_default_dtype`).

    Example::

        >>> model, kwargs = get_model("kidiq")     # doctest: +SKIP
        >>> sorted(kwargs)                          # doctest: +SKIP
        ['kid_score', 'mom_iq']
    """
    entry = get_entry(name)
    return entry.model, entry.kwargs(path, dtype)


def reference_latents(
    name: str,
    path: str | os.PathLike | None = None,
    dtype: torch.dtype | None = None,
    flatten: bool = False,
) -> dict[str, torch.Tensor]:
    """Reference posterior draws as values of the model's latent sites.

    See :meth:`ZooEntry.reference_latents`.

    Example::

        >>> z = reference_latents("eight_schools", flatten=True)  # doctest: +SKIP
        >>> z["theta_trans"].shape                                 # doctest: +SKIP
        torch.Size([10000, 8])
    """
    return get_entry(name).reference_latents(path, dtype, flatten)

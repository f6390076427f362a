"""The one boundary between pyrodiv and ArviZ.

Every ArviZ call in pyrodiv goes through this module, so that a change in ArviZ's API (ArviZ 1.x
replaces ``InferenceData`` with ``xarray.DataTree`` and moves the plotting and stats functions)
touches one file only. It is also the only place where NumPy appears: the functions here take
``torch.Tensor`` (or array-like) input and give ``torch.Tensor`` output where a number array is
returned.

Groups follow ArviZ's conventions: every variable of ``posterior``, ``sample_stats`` and
``log_likelihood`` has the leading dimensions ``(chain, draw)``; ``observed_data`` has none.

Example::

    >>> import torch
    >>> from pyrodiv import arviz_adapter
    >>> idata = arviz_adapter.to_inference_data({"mu": torch.zeros(2, 100)})
    >>> arviz_adapter.get_draws(idata, "mu").shape
    torch.Size([2, 100])
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

with warnings.catch_warnings():
    # ArviZ 0.2x announces its 1.x refactor with a FutureWarning on import.
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

InferenceData = az.InferenceData

__all__ = [
    "InferenceData",
    "from_netcdf",
    "get_draws",
    "group_names",
    "plot_forest",
    "plot_pair",
    "psis",
    "summary",
    "to_inference_data",
    "to_netcdf",
    "var_names",
]


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().contiguous().numpy()
    return np.asarray(value)


def _group_to_numpy(group: Mapping[str, Any] | None, name: str, sampled: bool) -> dict | None:
    if group is None:
        return None
    if not isinstance(group, Mapping):
        raise ValueError(f"{name} must be a dict of arrays, got {type(group).__name__}")
    out = {}
    shape = None
    for var, value in group.items():
        array = _to_numpy(value)
        if sampled:
            if array.ndim < 2:
                raise ValueError(
                    f"{name}[{var!r}] must have leading dimensions (chain, draw), "
                    f"got shape {array.shape}"
                )
            if shape is None:
                shape = array.shape[:2]
            elif array.shape[:2] != shape:
                raise ValueError(
                    f"{name}[{var!r}] has (chain, draw) = {array.shape[:2]}, "
                    f"but other variables have {shape}"
                )
        out[var] = array
    return out


def to_inference_data(
    posterior: Mapping[str, Any],
    sample_stats: Mapping[str, Any] | None = None,
    log_likelihood: Mapping[str, Any] | None = None,
    observed_data: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
    coords: Mapping[str, Sequence] | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
) -> InferenceData:
    """Build an ``arviz.InferenceData`` from dicts of tensors or arrays.

    Every variable of ``posterior``, ``sample_stats`` and ``log_likelihood`` has shape
    ``(chain, draw, *shape)``; ``observed_data`` variables have their own shape. Dimensions
    beyond (chain, draw) are named ``<var>_dim_<i>`` unless ``dims`` names them. ``attrs`` (plain
    numbers, strings and lists of them, so that the result can be written to netCDF) become
    ``idata.attrs``.

    Example::

        >>> import torch
        >>> idata = to_inference_data(
        ...     {"mu": torch.randn(1, 500)},
        ...     sample_stats={"diverging": torch.zeros(1, 500, dtype=torch.bool)},
        ...     attrs={"wall_time_s": 1.5},
        ... )
        >>> idata.attrs["wall_time_s"]
        1.5
    """
    post = _group_to_numpy(posterior, "posterior", sampled=True)
    if not post:
        raise ValueError("posterior must contain at least one variable")
    groups = {
        "posterior": post,
        "sample_stats": _group_to_numpy(sample_stats, "sample_stats", sampled=True),
        "log_likelihood": _group_to_numpy(log_likelihood, "log_likelihood", sampled=True),
        "observed_data": _group_to_numpy(observed_data, "observed_data", sampled=False),
    }
    chain_draw = next(iter(post.values())).shape[:2]
    for name in ("sample_stats", "log_likelihood"):
        group = groups[name]
        if group:
            other = next(iter(group.values())).shape[:2]
            if other != chain_draw:
                raise ValueError(
                    f"{name} has (chain, draw) = {other}, but posterior has {chain_draw}"
                )
    groups = {name: group for name, group in groups.items() if group}
    with warnings.catch_warnings():
        # "More chains than draws" is a shape heuristic; our shapes are explicit.
        warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
        idata = az.from_dict(
            **groups,
            coords=dict(coords) if coords else None,
            dims=dict(dims) if dims else None,
            attrs=dict(attrs) if attrs else None,
        )
    return idata


def group_names(idata: InferenceData) -> list[str]:
    """The names of the groups in ``idata`` (``"posterior"``, ``"log_likelihood"``, ...).

    Example::

        >>> import torch
        >>> group_names(to_inference_data({"mu": torch.zeros(1, 10)}))
        ['posterior']
    """
    return list(idata.groups())


def var_names(idata: InferenceData, group: str = "posterior") -> list[str]:
    """The variable names of one group of ``idata``.

    Example::

        >>> import torch
        >>> var_names(to_inference_data({"mu": torch.zeros(1, 10), "tau": torch.ones(1, 10)}))
        ['mu', 'tau']
    """
    if group not in idata.groups():
        raise ValueError(f"group {group!r} is not in this InferenceData ({idata.groups()})")
    return list(getattr(idata, group).data_vars)


def get_draws(
    idata: InferenceData,
    var_name: str,
    group: str = "posterior",
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The values of one variable as a tensor; shape ``(chain, draw, *shape)`` for sampled groups.

    Floating values get ``dtype`` (default: torch's default dtype).

    Example::

        >>> import torch
        >>> idata = to_inference_data({"beta": torch.zeros(2, 50, 3)})
        >>> get_draws(idata, "beta").shape
        torch.Size([2, 50, 3])
    """
    if var_name not in var_names(idata, group):
        raise ValueError(f"variable {var_name!r} is not in group {group!r}")
    tensor = torch.as_tensor(np.asarray(getattr(idata, group)[var_name].values))
    if tensor.is_floating_point():
        tensor = tensor.to(dtype or torch.get_default_dtype())
    return tensor


def psis(log_weights: Any) -> tuple[torch.Tensor, float]:
    r"""Pareto-smoothed importance sampling of one vector of log weights (``az.psislw``).

    Given :math:`\log w_s`, :math:`s = 1..S`, fits a generalized Pareto distribution to the
    largest :math:`M = \min(S/5, 3\sqrt{S})` weights, replaces them by the expected order
    statistics of the fit, and returns the smoothed, self-normalized log weights
    (:math:`\operatorname{logsumexp} = 0`) and the fitted shape :math:`\hat k`. Yao et al.
    (2018): :math:`\hat k < 0.5` good, :math:`0.5 \le \hat k \le 0.7` usable,
    :math:`\hat k > 0.7` unreliable.

    Two cases differ from a bare ``az.psislw``:

    - weights that are all equal up to rounding (:math:`\max - \min \le 10^3 \epsilon
      \max(1, |\log w|_\infty)`, for instance a guide equal to the exact posterior) give
      :math:`\hat k = -\infty` and uniform weights. ArviZ would report ``inf`` for an empty tail
      or fit the rounding noise.
    - a ``-inf`` log weight (draw outside the target's support) is kept; ``nan`` raises.

    :math:`\hat k = \infty` means that the tail has 4 or fewer draws (use more draws).

    Example::

        >>> import torch
        >>> lw, khat = psis(torch.randn(1000, dtype=torch.float64) * 0.1)
        >>> bool(khat < 0.5), float(lw.logsumexp(0).abs()) < 1e-12
        (True, True)
    """
    tensor = torch.as_tensor(log_weights)
    if tensor.dim() != 1 or tensor.numel() == 0:
        raise ValueError(
            f"log_weights must be a non-empty vector, got shape {tuple(tensor.shape)}"
        )
    dtype = tensor.dtype if tensor.is_floating_point() else torch.float64
    array = _to_numpy(tensor).astype(np.float64)
    if np.isnan(array).any():
        raise ValueError("log_weights contains nan")
    if np.isposinf(array).any():
        raise ValueError("log_weights contains +inf")
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        raise ValueError("log_weights are all -inf: no draw lies in the target's support")
    scale = max(1.0, float(np.abs(finite).max()))
    eps = float(torch.finfo(dtype).eps)
    if finite.size == array.size and float(finite.max() - finite.min()) <= 1e3 * eps * scale:
        smoothed = np.full_like(array, -math.log(array.size))
        return torch.as_tensor(smoothed, dtype=dtype), -math.inf
    smoothed, khat = az.psislw(array)
    return torch.as_tensor(np.asarray(smoothed), dtype=dtype), float(khat)


def summary(idata: InferenceData, var_names: Sequence[str] | None = None, **kwargs):
    """ArviZ's summary table (``az.summary``): mean, sd, HDI, MCSE, ESS, R-hat per scalar.

    Returns a ``pandas.DataFrame`` indexed by ``var[i, j]``. ``kwargs`` go to ``az.summary``
    (for example ``kind="stats"``, ``hdi_prob=0.9``).

    Example::

        >>> import torch
        >>> table = summary(to_inference_data({"mu": torch.randn(2, 500)}), kind="stats")
        >>> list(table.index)
        ['mu']
    """
    return az.summary(idata, var_names=list(var_names) if var_names else None, **kwargs)


def _labelled(data) -> tuple[list, list[str]]:
    if isinstance(data, Mapping):
        return list(data.values()), [str(label) for label in data]
    if isinstance(data, InferenceData):
        return [data], ["posterior"]
    data = list(data)
    return data, [f"model {i}" for i in range(len(data))]


def _common_var_names(datas: list, var_names: Sequence[str] | None) -> list[str]:
    if var_names is not None:
        return list(var_names)
    common = [name for name in datas[0].posterior.data_vars]
    for idata in datas[1:]:
        common = [name for name in common if name in idata.posterior.data_vars]
    if not common:
        raise ValueError("the InferenceData objects have no posterior variable in common")
    return common


def plot_forest(data, var_names: Sequence[str] | None = None, combined: bool = True, **kwargs):
    """Forest plot (``az.plot_forest``): intervals of each variable, one row per posterior.

    ``data`` is one ``InferenceData``, a list of them or a ``{label: InferenceData}`` dict;
    chains are combined by default. Returns the axes.

    Example::

        >>> axes = plot_forest({"NUTS": idata_nuts, "AutoNormal": idata_guide})  # doctest: +SKIP
    """
    datas, labels = _labelled(data)
    return az.plot_forest(
        datas,
        model_names=labels,
        var_names=_common_var_names(datas, var_names),
        combined=combined,
        **kwargs,
    )


def plot_pair(idata: InferenceData, var_names: Sequence[str] | None = None, **kwargs):
    """Pairwise scatter/KDE plot of one posterior (``az.plot_pair``). Returns the axes.

    Example::

        >>> axes = plot_pair(idata, var_names=["mu", "tau"], kind="kde")  # doctest: +SKIP
    """
    return az.plot_pair(idata, var_names=list(var_names) if var_names else None, **kwargs)


def to_netcdf(idata: InferenceData, path) -> str:
    """Write ``idata`` (all groups and ``idata.attrs``) to a netCDF file; returns the path.

    Example::

        >>> to_netcdf(idata, "nuts.nc")  # doctest: +SKIP
        'nuts.nc'
    """
    return idata.to_netcdf(str(path))


def from_netcdf(path) -> InferenceData:
    """Read an InferenceData written by :func:`to_netcdf`.

    Example::

        >>> idata = from_netcdf("nuts.nc")  # doctest: +SKIP
    """
    return az.from_netcdf(str(path))

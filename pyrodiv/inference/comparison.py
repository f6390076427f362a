r"""Compare approximate posteriors with a reference, one row per method and scalar variable.

For a method's draws :math:`x` and the reference draws :math:`r` of one scalar variable:

* ``mean_error`` :math:`= |\bar x - \bar r| / \mathrm{sd}(r)`,
* ``sd_ratio`` :math:`= \mathrm{sd}(x) / \mathrm{sd}(r)`,
* ``w1`` :math:`= W_1(x, r) / \mathrm{sd}(r)`, the 1-D Wasserstein distance between the two
  empirical distributions, :math:`\int_0^1 |F_x^{-1}(u) - F_r^{-1}(u)|\,du`, in reference-sd
  units,
* ``khat``: the Pareto :math:`\hat k` of the method's importance weights when its
  InferenceData carries ``sample_stats.log_weight`` (fitted guides), else NaN,
* ``wall_time_s``: from the InferenceData's ``attrs``.

Example::

    >>> table = compare_posteriors({"nuts": nuts_idata, "forward_kl": fkl_idata},
    ...                            reference="nuts")
    >>> table[["method", "variable", "mean_error", "sd_ratio", "w1", "khat"]]
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import wasserstein_distance

from . import arviz_adapter


def _scalar_columns(idata) -> dict[str, np.ndarray]:
    """Every posterior variable flattened to scalar columns: ``beta[0]``, ``beta[1]``, ..."""
    columns = {}
    for name in arviz_adapter.var_names(idata):
        draws = arviz_adapter.get_draws(idata, name).double().numpy()
        flat = draws.reshape(draws.shape[0] * draws.shape[1], -1)
        if draws.ndim == 2:
            columns[name] = flat[:, 0]
        else:
            for index in np.ndindex(*draws.shape[2:]):
                label = ",".join(str(i) for i in index)
                columns[f"{name}[{label}]"] = flat[:, np.ravel_multi_index(index, draws.shape[2:])]
    return columns


def _khat(idata) -> float:
    if "sample_stats" not in arviz_adapter.group_names(idata):
        return math.nan
    if "log_weight" not in arviz_adapter.var_names(idata, "sample_stats"):
        return math.nan
    log_weight = arviz_adapter.get_draws(idata, "log_weight", group="sample_stats").reshape(-1)
    return float(arviz_adapter.psis(log_weight)[1])


def compare_posteriors(idatas: dict, reference="nuts") -> pd.DataFrame:
    """A table comparing each method's posterior with the reference, per scalar variable.

    :param idatas: ``{method name: arviz.InferenceData}``.
    :param reference: the name of one entry of ``idatas``, or an InferenceData (for
        example gold-standard draws).
    :returns: a DataFrame with columns ``method, variable, mean, sd, mean_error, sd_ratio,
        w1, khat, wall_time_s``; the reference's own rows are included when it is named.
    """
    if not isinstance(idatas, dict) or not idatas:
        raise TypeError("compare_posteriors: idatas must be a non-empty dict of InferenceData")
    if isinstance(reference, str):
        if reference not in idatas:
            raise ValueError(
                f"compare_posteriors: reference {reference!r} is not one of {sorted(idatas)}"
            )
        reference = idatas[reference]
    ref = _scalar_columns(reference)
    rows = []
    for method, idata in idatas.items():
        columns = _scalar_columns(idata)
        khat = _khat(idata)
        wall = idata.attrs.get("wall_time_s", math.nan) if hasattr(idata, "attrs") else math.nan
        for variable, draws in columns.items():
            if variable not in ref:
                continue
            ref_draws = ref[variable]
            ref_sd = float(ref_draws.std(ddof=1))
            scale = ref_sd if ref_sd > 0 else 1.0
            rows.append(
                {
                    "method": method,
                    "variable": variable,
                    "mean": float(draws.mean()),
                    "sd": float(draws.std(ddof=1)),
                    "mean_error": abs(float(draws.mean()) - float(ref_draws.mean())) / scale,
                    "sd_ratio": float(draws.std(ddof=1)) / scale,
                    "w1": float(wasserstein_distance(draws, ref_draws)) / scale,
                    "khat": khat,
                    "wall_time_s": float(wall),
                }
            )
    if not rows:
        raise ValueError("compare_posteriors: no variable is shared with the reference")
    return pd.DataFrame(rows)

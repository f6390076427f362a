"""Read posteriordb data and reference draws from a local folder.

The reference posteriors (see ``README.md`` in the posteriordb folder) are read at run time and
never copied into this repository. The folder holds one sub-folder per posterior, named as in
posteriordb (``eight_schools-eight_schools_noncentered``, ``kidiq-kidscore_momiq``, ...), each
with ``data.json.zip``, ``reference_draws.json.zip``, ``posterior.json`` and
``reference_info.json``.

The folder is found by :func:`posteriordb_path`, in this order:

1. the ``path`` argument of any function here,
2. the environment variable ``PYRODIV_POSTERIORDB``,
3. ``../shared/posteriordb`` relative to the current directory,
4. ``../shared/posteriordb`` relative to the repository root (the parent of the ``pyrodiv``
   package folder).

Example::

    >>> from pyrodiv.zoo.posteriordb import load_data, load_reference_draws
    >>> data = load_data("eight_schools")                     # doctest: +SKIP
    >>> data["J"], data["sigma"].shape                        # doctest: +SKIP
    (8, torch.Size([8]))
    >>> load_reference_draws("eight_schools")["theta"].shape  # doctest: +SKIP
    (10, 1000, 8)
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

ENV_VAR = "PYRODIV_POSTERIORDB"

_RELATIVE = Path("..") / "shared" / "posteriordb"
_REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def posteriordb_path(path: str | os.PathLike | None = None) -> Path:
    """Return the folder of the local posteriordb copy.

    The order is: ``path`` if given, then ``$PYRODIV_POSTERIORDB`` if set, then
    ``../shared/posteriordb`` relative to the current directory, then relative to the
    repository root. An explicit ``path`` or a set environment variable is final: if it does
    not name a folder, this raises rather than falling back.

    :raises FileNotFoundError: naming every place that was tried.

    Example::

        >>> posteriordb_path()                                # doctest: +SKIP
        PosixPath('/work/shared/posteriordb')
    """
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir():
            return p.resolve()
        raise FileNotFoundError(f"posteriordb folder not found: {str(p)!r} (given as `path`)")
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        if p.is_dir():
            return p.resolve()
        raise FileNotFoundError(f"posteriordb folder not found: {str(p)!r} (from ${ENV_VAR})")
    tried = []
    for base, what in ((Path.cwd(), "current directory"), (_REPO_ROOT, "repository root")):
        p = base / _RELATIVE
        tried.append(f"{str(p)!r} ({what})")
        if p.is_dir():
            return p.resolve()
    raise FileNotFoundError(
        "posteriordb folder not found. Tried: "
        + ", ".join(tried)
        + f". Pass `path=` or set ${ENV_VAR} to the folder holding the posterior sub-folders."
    )


def list_posteriors(path: str | os.PathLike | None = None) -> list[str]:
    """Names of the posterior folders available locally, sorted.

    Example::

        >>> "eight_schools-eight_schools_noncentered" in list_posteriors()  # doctest: +SKIP
        True
    """
    root = posteriordb_path(path)
    return sorted(p.name for p in root.iterdir() if (p / "posterior.json").is_file())


def posterior_folder(name: str, path: str | os.PathLike | None = None) -> Path:
    """Folder of one posterior, from its full posteriordb name or an unambiguous part of it.

    ``name`` may be the folder name (``"kidiq-kidscore_momiq"``), its data part (``"kidiq"``)
    or its model part (``"kidscore_momiq"``).

    :raises KeyError: if no folder, or more than one, matches.
    """
    root = posteriordb_path(path)
    if (root / name / "posterior.json").is_file():
        return root / name
    names = list_posteriors(root)
    hits = [n for n in names if name in n.split("-", 1)]
    if len(hits) == 1:
        return root / hits[0]
    if hits:
        raise KeyError(f"posterior name {name!r} is ambiguous: {hits}")
    raise KeyError(f"no posterior {name!r} in {str(root)!r}; available: {names}")


def _read_json(folder: Path, stem: str) -> Any:
    """Read ``stem.json.zip`` (its one file member) or, failing that, a plain ``stem.json``.

    :raises FileNotFoundError: if neither file exists.
    :raises ValueError: naming the file, if it is not a readable zip (truncated or corrupt),
        holds no file, or does not hold valid JSON.
    """
    zipped = folder / f"{stem}.json.zip"
    if zipped.is_file():
        try:
            with zipfile.ZipFile(zipped) as z:
                members = [m for m in z.namelist() if not m.endswith("/")]
                if not members:
                    raise ValueError(f"{str(zipped)!r} is an empty zip archive (no file in it)")
                text = z.read(members[0])
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as error:
            raise ValueError(
                f"{str(zipped)!r} is not a readable zip archive (truncated or corrupt?): {error}"
            ) from error
        return _parse_json(text, f"{zipped}:{members[0]}")
    plain = folder / f"{stem}.json"
    if plain.is_file():
        return _parse_json(plain.read_bytes(), str(plain))
    raise FileNotFoundError(f"neither {str(zipped)!r} nor {str(plain)!r} exists")


def _parse_json(text: bytes, where: str) -> Any:
    """``json.loads(text)``, or a ``ValueError`` naming ``where`` (the file) and the position."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{where!r} does not hold valid JSON: {error}") from error


def _read_json_file(path: Path) -> Any:
    """A plain JSON file, or a ``ValueError`` naming it."""
    return _parse_json(path.read_bytes(), str(path))


def load_posterior_info(name: str, path: str | os.PathLike | None = None) -> dict:
    """The ``posterior.json`` of a posterior: its name, parameter dimensions and keywords.

    Example::

        >>> load_posterior_info("eight_schools")["dimensions"]  # doctest: +SKIP
        {'theta': 8, 'mu': 1, 'tau': 1}
    """
    return _read_json_file(posterior_folder(name, path) / "posterior.json")


def _is_int_list(values: list) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _to_tensor(value: list, dtype: torch.dtype) -> torch.Tensor:
    flat = np.asarray(value)
    if flat.dtype.kind in "iub":
        return torch.as_tensor(flat.astype(np.int64))
    return torch.as_tensor(flat.astype(np.float64)).to(dtype)


def load_data(
    name: str, path: str | os.PathLike | None = None, dtype: torch.dtype | None = None
) -> dict[str, Any]:
    """Load the data of a posterior as a dict of torch tensors and Python numbers.

    Conversion rules:

    * a JSON list whose entries are all integers becomes a ``torch.long`` tensor (counts,
      indices, and also integer-valued reals such as eight schools' ``y``: the zoo's
      ``data_to_kwargs`` casts those to floating point where the model wants reals),
    * any other list (nested lists give matrices) becomes a tensor of ``dtype``, by default
      :func:`torch.get_default_dtype`,
    * a JSON number stays a Python ``int`` or ``float`` (sizes such as ``N``, ``J``, ``K``).

    Example::

        >>> data = load_data("kidiq")                 # doctest: +SKIP
        >>> data["N"], data["mom_iq"].dtype           # doctest: +SKIP
        (434, torch.float32)
    """
    dtype = torch.get_default_dtype() if dtype is None else dtype
    folder = posterior_folder(name, path)
    raw = _read_json(folder, "data")
    if not isinstance(raw, dict):
        raise ValueError(
            f"{str(folder / 'data.json.zip')!r}: expected a JSON object (a dict of data), got "
            f"{type(raw).__name__}"
        )
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, list):
            out[key] = _to_tensor(value, dtype)
        else:
            out[key] = value
    return out


_INDEX = re.compile(r"^(?P<base>[^\[\]]+)\[(?P<idx>[0-9,\s]+)\]$")


def group_draws(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Regroup flattened names (``beta[1]``, ``beta[2]``, ``L[2,1]``) into arrays.

    Each value of ``flat`` has the same leading shape (for example (chains, draws)); a parameter
    with 1-based indices gains trailing dimensions of the largest index seen in each position.
    Scalars keep their shape. Insertion order of first appearance is kept.

    Example::

        >>> g = group_draws({"b[2]": np.array([2.0]), "b[1]": np.array([1.0]), "s": np.ones(1)})
        >>> g["b"].tolist(), g["s"].shape
        ([[1.0, 2.0]], (1,))
    """
    groups: dict[str, list[tuple[tuple[int, ...], np.ndarray]] | np.ndarray] = {}
    for key, value in flat.items():
        m = _INDEX.match(key)
        if m is None:
            groups[key] = np.asarray(value)
            continue
        idx = tuple(int(i) - 1 for i in m["idx"].split(","))
        entry = groups.setdefault(m["base"], [])
        if not isinstance(entry, list):
            raise ValueError(f"parameter {m['base']!r} appears both as a scalar and a vector")
        entry.append((idx, np.asarray(value)))
    out: dict[str, np.ndarray] = {}
    for key, entry in groups.items():
        if not isinstance(entry, list):
            out[key] = entry
            continue
        shape = tuple(max(i[d] for i, _ in entry) + 1 for d in range(len(entry[0][0])))
        lead = entry[0][1].shape
        arr = np.full(lead + shape, np.nan)
        for idx, value in entry:
            arr[(...,) + idx] = value
        if np.isnan(arr).any():
            raise ValueError(f"parameter {key!r} has missing entries in the draws")
        out[key] = arr
    return out


def load_reference_draws(
    name: str, path: str | os.PathLike | None = None
) -> dict[str, np.ndarray]:
    """Load the gold-standard reference draws of a posterior.

    Returns a dict from parameter name to a float64 NumPy array of shape (chains, draws) for a
    scalar and (chains, draws, d) for a vector: ``beta[1]``, ``beta[2]``, ... are regrouped into
    ``beta`` in index order. For posteriordb's references, chains = 10 and draws = 1000.

    Example::

        >>> draws = load_reference_draws("kidiq")     # doctest: +SKIP
        >>> draws["beta"].shape, draws["sigma"].shape  # doctest: +SKIP
        ((10, 1000, 2), (10, 1000))
    """
    folder = posterior_folder(name, path)
    chains = _read_json(folder, "reference_draws")
    if not (
        isinstance(chains, list) and chains and all(isinstance(c, dict) and c for c in chains)
    ):
        raise ValueError(
            f"{str(folder / 'reference_draws.json.zip')!r}: expected a non-empty list of chains, "
            "each a dict from parameter name to its draws"
        )
    keys = list(chains[0])
    flat = {k: np.asarray([c[k] for c in chains], dtype=np.float64) for k in keys}
    return group_draws(flat)

r"""NumPyro's jitted SVI step and NUTS on the benchmark targets, for the speed comparisons.

NumPyro (on JAX) is an optional dependency of the benchmarks (``pip install numpyro``, the
``numpyro`` extra): :func:`available` says whether it can be imported, and why not. The models
are the NumPyro twins of :mod:`common`'s (same priors, likelihood, data and float32 dtype):

* ``bimodal``: :math:`\tfrac12 N(-7, 1.4) + \tfrac12 N(7, 1.4)` with a learnable Normal guide;
* ``regression``: :math:`\beta\sim N(0, I)`, :math:`\sigma\sim\mathrm{HalfNormal}(1)`,
  :math:`y_n\sim N(x_n^\top\beta, \sigma^2)`, with ``AutoNormal``;
* ``eight_schools``: the non-centred eight schools of :mod:`pyrodiv.zoo`, with ``AutoNormal``.

One step is ``jax.jit(svi.update)`` (``Trace_ELBO`` with vectorized particles, Adam) followed
by ``block_until_ready`` on the loss, so that the time covers the work and not only its
dispatch. On CPU, :func:`single_thread` (called before JAX is first imported) restricts XLA to
one thread, as the torch side runs with ``torch.set_num_threads(1)``.

Example::

    >>> ok, why = available()                                        # doctest: +SKIP
    >>> step = svi_step("regression", num_particles=64)              # doctest: +SKIP
    >>> loss = step()                                                # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import os

from common import BIMODAL_LOC, BIMODAL_VAR, regression_data

#: The XLA options that keep JAX's CPU backend on one thread.
ONE_THREAD = "--xla_cpu_multi_thread_eigen=false"


def available() -> tuple[bool, str]:
    """Whether NumPyro and JAX can be imported, and a one-line note when they cannot."""
    missing = [m for m in ("jax", "numpyro") if importlib.util.find_spec(m) is None]
    if missing:
        return False, (
            f"NumPyro rows skipped: {' and '.join(missing)} not installed "
            "(pip install numpyro, or pip install -e '.[numpyro]')"
        )
    return True, ""


def single_thread() -> None:
    """Ask XLA for one CPU thread (only effective before JAX is first imported)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + ONE_THREAD).strip()


def versions() -> str:
    """``numpyro X, jax Y`` (for the results files)."""
    import jax
    import numpyro

    return f"numpyro {numpyro.__version__}, jax {jax.__version__}"


# ---- models ------------------------------------------------------------------------------


def _bimodal():
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as nd

    loc = jnp.array([-BIMODAL_LOC, BIMODAL_LOC])
    components = nd.Normal(loc, jnp.sqrt(jnp.full((2,), BIMODAL_VAR)))
    numpyro.sample("x", nd.MixtureSameFamily(nd.Categorical(probs=jnp.full(2, 0.5)), components))


def _bimodal_guide():
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as nd
    from numpyro.distributions import constraints

    loc = numpyro.param("loc", jnp.array(0.0))
    scale = numpyro.param("scale", jnp.array(3.0), constraint=constraints.positive)
    numpyro.sample("x", nd.Normal(loc, scale))


def regression(X, y=None):
    """The NumPyro twin of :func:`common.regression` (no subsampling)."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as nd

    beta = numpyro.sample("beta", nd.Normal(jnp.zeros(X.shape[-1]), 1.0).to_event(1))
    sigma = numpyro.sample("sigma", nd.HalfNormal(1.0))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", nd.Normal((X * beta).sum(-1), sigma), obs=y)


def _eight_schools(J, sigma, y=None):
    import numpyro
    import numpyro.distributions as nd

    mu = numpyro.sample("mu", nd.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", nd.HalfCauchy(5.0))
    with numpyro.plate("schools", J):
        theta_trans = numpyro.sample("theta_trans", nd.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_trans)
        numpyro.sample("y", nd.Normal(theta, sigma), obs=y)


def _as_jax(value):
    import jax.numpy as jnp

    if hasattr(value, "detach"):
        return jnp.asarray(value.detach().cpu().numpy())
    return value


def target(key: str, n: int = 1000, d: int = 10):
    """``(model, guide or None, kwargs)`` of a benchmark target by :func:`common.problems`'s
    key; ``None`` stands for ``AutoNormal``. The regression's size is ``(n, d)``."""
    if key == "bimodal":
        return _bimodal, _bimodal_guide, {}
    if key == "regression":
        X, y = regression_data(n, d)
        return regression, None, {"X": _as_jax(X), "y": _as_jax(y)}
    if key == "eight_schools":
        from pyrodiv.zoo import get_model

        _, kwargs = get_model("eight_schools")
        J = int(kwargs.pop("J"))  # a static size: bound, not traced

        def eight_schools(sigma, y=None):
            return _eight_schools(J, sigma, y)

        return eight_schools, None, {k: _as_jax(v) for k, v in kwargs.items()}
    raise ValueError(f"unknown benchmark target {key!r}")


# ---- steps -------------------------------------------------------------------------------


def svi_step(key: str, num_particles: int, lr: float = 0.01, seed: int = 0, **size):
    """A zero-argument jitted NumPyro SVI step (``Trace_ELBO``, vectorized particles, Adam)
    on the target ``key``, returning the loss as a float. The first call compiles."""
    import jax
    import numpyro
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoNormal
    from numpyro.infer.initialization import init_to_feasible

    model, guide, kwargs = target(key, **size)
    if guide is None:
        guide = AutoNormal(model, init_loc_fn=init_to_feasible)
    elbo = Trace_ELBO(num_particles=num_particles, vectorize_particles=True)
    svi = SVI(model, guide, numpyro.optim.Adam(lr), elbo)
    state = [svi.init(jax.random.PRNGKey(seed), **kwargs)]
    update = jax.jit(svi.update)

    def step():
        state[0], loss = update(state[0], **kwargs)
        return float(loss.block_until_ready())

    return step


def nuts(key: str, num_warmup: int, num_samples: int, num_chains: int = 1, seed: int = 0, **size):
    """NumPyro NUTS on the target ``key``; returns the ``MCMC`` object after running it."""
    import jax
    from numpyro.infer import MCMC, NUTS

    model, _, kwargs = target(key, **size)
    mcmc = MCMC(
        NUTS(model),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        progress_bar=False,
        chain_method="sequential",
    )
    mcmc.run(jax.random.PRNGKey(seed), **kwargs)
    return mcmc

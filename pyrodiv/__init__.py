"""pyrodiv: fit probability distributions with any divergence, as drop-in Pyro SVI losses.

Example::

    import pyro, pyrodiv
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}),
                         loss=pyrodiv.ForwardKL(num_particles=256, vectorize_particles=True))
"""

from . import _moved

__version__ = "0.1.0"

# Every public name is imported on first use: ``import pyrodiv`` (and ``pyrodiv --help``) stays
# instant, and torch, Pyro and ArviZ load only when a name that needs them is reached.
_LAZY = {
    "GENERATOR_NAMES": "divergences.generators",
    "Generator": "divergences.generators",
    "get_generator": "divergences.generators",
    "CUBO": "divergences.losses",
    "CrossEntropy": "divergences.losses",
    "DivergenceLoss": "divergences.losses",
    "FDivergence": "divergences.losses",
    "ForwardKL": "divergences.losses",
    "JensenShannon": "divergences.losses",
    "RenyiBound": "divergences.losses",
    "ReverseKL": "divergences.losses",
    "Wasserstein": "divergences.losses",
    "get_loss": "divergences.losses",
    "SampleTarget": "divergences.targets",
    "compile": "divergences.compiled",
    "FusedAdam": "optim",
    "AdversarialFDivergence": "divergences.adversarial",
    "GAN": "divergences.adversarial",
    "LSGAN": "divergences.adversarial",
    "WGAN": "divergences.adversarial",
    "em_gaussian_mixture": "inference.em",
    "gradient_mle_gaussian_mixture": "inference.em",
    "MixtureFit": "inference.em",
    "FitResult": "inference.fit",
    "FitSettings": "inference.fit",
    "fit": "inference.fit",
    "compare_posteriors": "inference.comparison",
    "run_nuts": "inference.baselines",
    "run_hmc": "inference.baselines",
    "run_mcmc": "inference.mcmc_kernels",
    "GibbsKernel": "inference.mcmc_kernels",
    "guide_to_inference_data": "inference.inference_data",
    "psis_khat": "inference.diagnostics",
    "approximate": "inference.approximate",
    "Approximation": "inference.approximation",
    "ApproximateSettings": "inference.approximation",
    "ApproximationWarning": "inference.approximation",
}
_moved.install(__name__)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pyrodiv' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "compile",
    "FusedAdam",
    "AdversarialFDivergence",
    "GAN",
    "LSGAN",
    "WGAN",
    "em_gaussian_mixture",
    "gradient_mle_gaussian_mixture",
    "MixtureFit",
    "approximate",
    "Approximation",
    "ApproximateSettings",
    "ApproximationWarning",
    "compare_posteriors",
    "CUBO",
    "CrossEntropy",
    "DivergenceLoss",
    "FDivergence",
    "FitResult",
    "FitSettings",
    "ForwardKL",
    "GENERATOR_NAMES",
    "Generator",
    "JensenShannon",
    "RenyiBound",
    "ReverseKL",
    "SampleTarget",
    "Wasserstein",
    "fit",
    "get_generator",
    "get_loss",
    "guide_to_inference_data",
    "psis_khat",
    "run_hmc",
    "run_mcmc",
    "GibbsKernel",
    "run_nuts",
]

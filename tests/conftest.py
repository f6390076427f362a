import pyro
import pytest
import torch

# Two pytest workers share two cores: one torch thread each avoids oversubscription, which
# slows small tensor operations by orders of magnitude under load.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _fresh_pyro_state():
    """Every test starts with float64, an empty param store and validation on."""
    old_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    pyro.clear_param_store()
    pyro.enable_validation(True)
    yield
    torch.set_default_dtype(old_dtype)
    pyro.clear_param_store()


def pytest_collection_modifyitems(config, items):
    """CUDA-parametrized tests are skipped on machines without a GPU."""
    skip = pytest.mark.skip(reason="CUDA is not available")
    for item in items:
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip)

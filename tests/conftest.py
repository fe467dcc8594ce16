"""Test settings: offline, a private cache, deterministic seeds, one thread per process."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The tests' own families (tests/_toy_family.py, tests/reference_tokenizers.py) are named by recipes and
# catalogs; data files may name only zoo classes unless a package is trusted (zoo.targets).
os.environ["ZOO_TRUSTED_MODULES"] = "tests"

import random  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def one_thread():
    """One intra-op thread for modules that opt in (``pytestmark = pytest.mark.usefixtures("one_thread")``): on
    the shared two-core machine, two OpenMP threads per process ran ~10x slower for their small models."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seeded(monkeypatch, tmp_path_factory):
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    # Remote weights and caches of tests never touch the user's ~/.cache/zoo; datasets keep a shared cache
    # so rendered audio and reference statistics are built once per run.
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path_factory.getbasetemp() / "zoo-cache"))
    yield


@pytest.fixture(scope="session")
def vgg16_file(tmp_path_factory):
    """A VGG16 feature stack with seeded random weights, in the layout the perceptual loss reads (no download)."""
    from safetensors.torch import save_file
    from torchvision.models.vgg import cfgs, make_layers

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        features = make_layers(cfgs["D"])[:30]
    path = tmp_path_factory.mktemp("vgg16") / "vgg16.safetensors"
    save_file({f"features.{k}": v.contiguous() for k, v in features.state_dict().items()}, str(path))
    return path

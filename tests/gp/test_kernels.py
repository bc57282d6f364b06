"""The deep feature kernel: a kernel contract (shapes, batches, diag, symmetry, PSD) in float64."""

from __future__ import annotations

import pytest
import torch
from gpytorch.kernels import MaternKernel, ScaleKernel
from helpers import random_prior

from metaprior.gp import FrozenNetwork, NetworkFeatureKernel, feature_kernel


@pytest.fixture(params=[1, 3], ids=["d1", "d3"])
def dim(request):
    return request.param


@pytest.fixture
def kernel(dim):
    k = feature_kernel(FrozenNetwork(random_prior(dim)))
    k.outputscale = 1.3  # away from the default, so scaling is exercised
    k.base_kernel.base_kernel.lengthscale = 0.7
    return k


def dense(k, X1, X2=None):
    return k(X1, X1 if X2 is None else X2).to_dense()


def test_feature_kernel_structure(dim):
    k = feature_kernel(FrozenNetwork(random_prior(dim, hidden=(16, 5))))
    assert isinstance(k, ScaleKernel)
    inner = k.base_kernel
    assert isinstance(inner, NetworkFeatureKernel)
    assert isinstance(inner.base_kernel, MaternKernel)
    assert inner.base_kernel.lengthscale.shape == (1, 1)  # one shared lengthscale
    assert inner.network.n_features == 5


def test_output_shapes(kernel, dim):
    g = torch.Generator().manual_seed(0)
    X1 = torch.rand(5, dim, generator=g, dtype=torch.float64)
    X2 = torch.rand(7, dim, generator=g, dtype=torch.float64)
    K = dense(kernel, X1, X2)
    assert K.shape == (5, 7)
    assert K.dtype == torch.float64
    assert kernel(X1, X1, diag=True).shape == (5,)


def test_batch_shapes_and_batches_are_independent(kernel, dim):
    g = torch.Generator().manual_seed(1)
    X = torch.rand(2, 3, 4, dim, generator=g, dtype=torch.float64)
    Z = torch.rand(2, 3, 6, dim, generator=g, dtype=torch.float64)
    K = dense(kernel, X, Z)
    assert K.shape == (2, 3, 4, 6)
    # each batch equals the unbatched kernel on its own slice
    torch.testing.assert_close(K[1, 2], dense(kernel, X[1, 2], Z[1, 2]))
    # broadcast: a b x n x d batch against one m x d set
    assert dense(kernel, X[0], Z[0, 0]).shape == (3, 4, 6)


def test_diag_equals_diagonal_of_full_matrix(kernel, dim):
    g = torch.Generator().manual_seed(2)
    X = torch.rand(3, 6, dim, generator=g, dtype=torch.float64)
    full = dense(kernel, X)
    diag = kernel(X, X, diag=True)
    assert diag.shape == (3, 6)
    torch.testing.assert_close(diag, torch.diagonal(full, dim1=-2, dim2=-1))
    # a stationary base kernel on features: k(x, x) is the outputscale
    torch.testing.assert_close(diag, torch.full_like(diag, 1.3))


def test_symmetric_and_positive_semidefinite(kernel, dim):
    g = torch.Generator().manual_seed(3)
    X = torch.rand(40, dim, generator=g, dtype=torch.float64)
    X = torch.cat([X, X[:3]])  # duplicate points: PSD but singular
    K = dense(kernel, X)
    torch.testing.assert_close(K, K.T, rtol=0, atol=1e-14)
    assert torch.linalg.eigvalsh(K).min() >= -1e-8


def test_kernel_is_a_function_of_the_features(dim):
    """Two inputs with identical features get correlation 1; the kernel reads phi(x), not x."""
    net = FrozenNetwork(random_prior(dim))
    k = feature_kernel(net)
    X = torch.rand(4, dim, dtype=torch.float64)
    Z = net.features(X)
    base = k.base_kernel.base_kernel
    expected = k.outputscale * base(Z, Z).to_dense()
    torch.testing.assert_close(dense(k, X), expected)


def test_kernel_has_no_network_parameters(dim):
    k = feature_kernel(FrozenNetwork(random_prior(dim)))
    names = {n for n, _ in k.named_parameters()}
    assert names == {"raw_outputscale", "base_kernel.base_kernel.raw_lengthscale"}

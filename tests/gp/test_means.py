"""`NetworkMean`: gpytorch's reusable mean contract, plus the exact output mapping."""

from __future__ import annotations

import unittest

import torch
from gpytorch.test.base_mean_test_case import BaseMeanTestCase
from helpers import random_prior

from metaprior.gp import FrozenNetwork, NetworkMean
from metaprior.gp.particles import ShiftEnsemble
from metaprior.shift import ShiftParticles


def network_mean(dim: int, offset: float = 0.3, scale: float = 1.7) -> NetworkMean:
    return NetworkMean(FrozenNetwork(random_prior(dim)), offset=offset, scale=scale)


class Float64Case(BaseMeanTestCase):
    """The contract's inputs come from `torch.randn`: make them float64 like the GP's data."""

    seed = 0

    def setUp(self):
        super().setUp()
        self._dtype = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)

    def tearDown(self):
        torch.set_default_dtype(self._dtype)
        super().tearDown()


class TestNetworkMeanContract(Float64Case, unittest.TestCase):
    """A 3-D network (the contract's matrix inputs are `... x 4 x 3`)."""

    def create_mean(self, dim: int = 3, **kwargs):
        return network_mean(dim)

    def test_forward_vec(self):
        # gpytorch reads a vector as n points of one dimension: it needs a 1-D network
        mean = self.create_mean(dim=1)
        self.assertEqual(mean(torch.randn(4)).shape, torch.Size([4]))


class TestBatchNetworkMeanContract(Float64Case, unittest.TestCase):
    """A batch of 3 networks (stacked weights) behaves like a gpytorch mean with batch_shape 3."""

    batch_shape = torch.Size([3])

    def create_mean(self, dim: int = 3, **kwargs):
        mean = network_mean(dim)
        nets = [FrozenNetwork(random_prior(dim, seed=s)) for s in range(3)]
        for i in range(mean.network.n_weights):
            setattr(mean.network, f"w{i}", torch.stack([n.weights[i] for n in nets]))
        return mean

    def test_forward_vec(self):
        mean = self.create_mean(dim=1)
        self.assertEqual(mean(torch.randn(4)).shape, torch.Size([3, 4]))

    def test_forward_mat_multi_batch(self):
        mean = self.create_mean()
        self.assertEqual(mean(torch.randn(2, 3, 4, 3)).shape, torch.Size([2, 3, 4]))


def test_mean_maps_network_output_into_standardised_space():
    prior = random_prior(2)
    mean = NetworkMean(FrozenNetwork(prior), offset=0.3, scale=1.7)
    X = torch.rand(6, 2, dtype=torch.float64)  # unit cube = the prior's bounds here
    expected = (prior.predict(X)[..., 0] - 0.3) / 1.7
    torch.testing.assert_close(mean(X), expected, rtol=1e-12, atol=1e-12)
    mean.set_output_map(torch.tensor([-2.0]), torch.tensor([[4.0]]))
    torch.testing.assert_close(mean(X), (prior.predict(X)[..., 0] + 2.0) / 4.0)


def test_mean_has_no_trainable_parameters():
    # the marginal likelihood must fit only the GP's hyperparameters, never the weights
    mean = network_mean(2)
    assert list(mean.parameters()) == []
    assert len(list(mean.buffers())) > 0


def test_mean_is_float64_even_from_a_float32_prior():
    prior = random_prior(2)
    assert prior.params[0].dtype == torch.float32
    mean = NetworkMean(FrozenNetwork(prior))
    assert all(b.dtype == torch.float64 for b in mean.buffers())
    assert prior.params[0].dtype == torch.float32
    assert mean(torch.rand(5, 2, dtype=torch.float64)).dtype == torch.float64


def test_frozen_network_and_shift_ensemble_map_back_with_the_priors_output_scale():
    """Neither keeps its own copy of the family's output statistics: both use the prior's
    `OutputScale`, so they agree with `prior.predict` to the bit."""
    prior = random_prior(2)
    network = FrozenNetwork(prior)
    U = torch.rand(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert network.output_scale is prior.output_scale
    assert torch.equal(network(U), prior.unnormalize_y(prior.net(U)))
    # The identity hypothesis (t = 0, a = 1, b = 0) is the network itself.
    identity = ShiftParticles(t=torch.zeros(1, 2), a=torch.ones(1), b=torch.zeros(1))
    assert torch.equal(ShiftEnsemble(prior, identity)(U.unsqueeze(0)), network(U).unsqueeze(0))

"""Tests of training/sampling.py: inverse-frequency clip weights and the rank-consistent weighted sampler."""

import numpy as np
import pytest

from audioformer.training.sampling import WeightedClipSampler, inverse_frequency_weights


def test_inverse_frequency_weights():
    weights = inverse_frequency_weights([[0], [0, 1], [0], [2], []], num_labels=3)
    np.testing.assert_allclose(weights, [1 / 3, 1 / 3 + 1, 1 / 3, 1.0, 1 / 3])
    np.testing.assert_allclose(inverse_frequency_weights([0, 0, 1], 2), [0.5, 0.5, 1.0])
    with pytest.raises(ValueError, match="outside"):
        inverse_frequency_weights([[3]], num_labels=3)


def test_weighted_sampler_is_rank_consistent_and_weighted():
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler

    weights = np.array([1.0, 1.0, 1.0, 7.0])
    a, b = (
        WeightedClipSampler(weights, num_samples=4000, seed=5),
        WeightedClipSampler(weights, num_samples=4000, seed=5),
    )
    assert list(a) == list(b)  # two processes draw the same sequence...
    counts = np.bincount(list(a), minlength=4) / 4000
    np.testing.assert_allclose(counts, weights / weights.sum(), atol=0.03)
    a.set_epoch(1)
    assert list(a) != list(b)  # ...which changes with the epoch

    # ...and accelerate's shards of it are disjoint and cover it.
    sampler = WeightedClipSampler(weights, num_samples=16, seed=0)
    shards = [
        list(BatchSamplerShard(BatchSampler(sampler, 2, False), num_processes=2, process_index=r)) for r in range(2)
    ]
    full = list(BatchSampler(sampler, 2, False))
    assert shards[0] == full[0::2] and shards[1] == full[1::2]


def test_inverse_frequency_weights_of_an_arrow_column_equal_the_python_path():
    """The vectorised path (an Arrow column, as run_classification passes it) gives the same weights."""
    import pyarrow as pa

    from audioformer.training.sampling import inverse_frequency_weights

    rng = np.random.default_rng(0)
    multi = [sorted(rng.choice(7, size=rng.integers(0, 4), replace=False).tolist()) for _ in range(300)]
    multi[5] = [6]  # a rare class
    np.testing.assert_array_equal(
        inverse_frequency_weights(pa.array(multi, pa.list_(pa.int64())), 9), inverse_frequency_weights(multi, 9)
    )
    chunked = pa.chunked_array([pa.array(multi[:100]), pa.array(multi[100:])]).slice(50)
    np.testing.assert_array_equal(inverse_frequency_weights(chunked, 9), inverse_frequency_weights(multi[50:], 9))
    single = rng.integers(0, 5, size=200).tolist()
    np.testing.assert_array_equal(inverse_frequency_weights(pa.array(single), 5), inverse_frequency_weights(single, 5))
    with pytest.raises(ValueError, match="label index 9 is outside"):
        inverse_frequency_weights(pa.array([[1], [9]]), 9)

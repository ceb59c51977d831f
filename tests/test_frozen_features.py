"""NCM and SLDA on frozen features against small hand computations."""

import numpy as np
import torch
from cil.strategies.ncm import NCMConfig, NearestClassMean, normalised_class_means
from cil.strategies.slda import StreamingLDA


def test_ncm_means_and_nearest_mean_by_hand():
    features = torch.tensor([[3.0, 0.0], [0.0, 2.0], [4.0, 4.0], [0.0, 5.0]])
    labels = torch.tensor([0, 0, 1, 1])
    means = normalised_class_means(features, labels, [0, 1])
    s = float(1 / np.sqrt(2))
    assert torch.allclose(means, torch.tensor([[0.5, 0.5], [s / 2, (s + 1) / 2]]))
    ncm = NearestClassMean(NCMConfig())
    ncm.learn(features[:2], labels[:2], 1)  # base step: class 0
    ncm.learn(features[2:], labels[2:], 2)  # next step: class 1, class 0's mean untouched
    assert torch.allclose(ncm.means, means)
    test = torch.tensor([[10.0, 0.0], [1.0, 9.0]])
    # squared distances from (1, 0): 0.5 to class 0, (1 - .354)^2 + .854^2 = 1.146 to class 1
    assert torch.allclose(ncm.scores(test)[0], torch.tensor([-0.5, -1.1464]), atol=1e-4)
    assert ncm.scores(test).argmax(1).tolist() == [0, 1]


def pooled_statistics(z: np.ndarray, y: np.ndarray, n_classes: int):
    means = np.stack([z[y == c].mean(0) for c in range(n_classes)])
    centred = z - means[y]
    return means, centred.T @ centred / len(z)


def test_streaming_lda_statistics_equal_the_batch_ones_in_any_order():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(60, 3)) + np.repeat(np.eye(3) * 3, 20, axis=0)
    y = np.repeat([0, 1, 2], 20)
    means, covariance = pooled_statistics(z, y, 3)
    for order in (np.arange(60), rng.permutation(60)):
        lda = StreamingLDA(3)
        for chunk in np.array_split(order, 7):
            lda.update(torch.tensor(z[chunk]), torch.tensor(y[chunk]), 3)
        assert np.allclose(lda.means.numpy(), means) and np.allclose(lda.covariance.numpy(), covariance)
        assert lda.counts.tolist() == [20, 20, 20]


def test_streaming_lda_discriminant_by_hand():
    lda = StreamingLDA(2, shrinkage=0.0)
    # class 0 at (+-1, 0) around (0, 0); class 1 at (2 +- 1, 0)... plus a second axis of spread
    z = torch.tensor([[-1.0, 1.0], [1.0, -1.0], [1.0, 1.0], [3.0, -1.0]])
    lda.update(z, torch.tensor([0, 0, 1, 1]), 2)
    # means (0, 0) and (2, 0); deviations (-1, 1), (1, -1), (-1, 1), (1, -1): Sigma = [[1, -1], [-1, 1]] (singular)
    assert torch.allclose(lda.covariance, torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64))
    lda.shrinkage = 0.5  # Lambda = inv(0.5 Sigma + 0.5 I) = inv([[1, -.5], [-.5, 1]]) = [[4/3, 2/3], [2/3, 4/3]]
    weights, bias = lda.discriminant()
    assert torch.allclose(weights, torch.tensor([[0.0, 0.0], [8 / 3, 4 / 3]], dtype=torch.float64))
    assert torch.allclose(bias, torch.tensor([0.0, -8 / 3], dtype=torch.float64))  # -1/2 mu . Lambda mu

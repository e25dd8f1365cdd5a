"""segnet_lib.bayes: MC-dropout summaries, sampling, and the calibration table."""
import math

import numpy as np
import pytest

from segnet_lib import bayes


def test_predictive_entropy_extremes():
    assert bayes.predictive_entropy(np.full(4, 0.25)) == pytest.approx(math.log(4))
    assert bayes.predictive_entropy(np.array([0.0, 1.0, 0.0])) == 0.0


def test_summarize_two_disagreeing_samples_by_hand():
    # One pixel, two classes: the samples say [1, 0] and [0, 1].
    samples = np.array([[[[1.0, 0.0]]], [[[0.0, 1.0]]]])
    r = bayes.summarize_samples(samples)
    np.testing.assert_allclose(r.mean[0, 0], [0.5, 0.5])
    assert r.variance[0, 0] == pytest.approx(0.25)  # each class: values 1 and 0
    assert r.entropy[0, 0] == pytest.approx(math.log(2))
    assert r.mutual_information[0, 0] == pytest.approx(math.log(2))  # samples are certain
    assert r.num_samples == 2 and r.labels.shape == (1, 1)


def test_summarize_agreeing_samples_has_no_model_uncertainty():
    p = np.array([0.7, 0.2, 0.1])
    samples = np.broadcast_to(p, (5, 2, 3, 3))
    r = bayes.summarize_samples(samples)
    np.testing.assert_allclose(r.variance, 0, atol=1e-7)
    np.testing.assert_allclose(r.mutual_information, 0, atol=1e-6)
    np.testing.assert_allclose(r.entropy, -(p * np.log(p)).sum(), rtol=1e-6)
    assert (r.labels == 0).all()


def test_accumulator_in_chunks_equals_one_batch(rng):
    logits = rng.normal(size=(7, 4, 5, 3))
    samples = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    acc = bayes.MCAccumulator()
    acc.update(samples[:3])
    acc.update(samples[3:])
    chunked, whole = acc.result(), bayes.summarize_samples(samples)
    for name in ("mean", "variance", "entropy", "mutual_information"):
        np.testing.assert_allclose(getattr(chunked, name), getattr(whole, name), rtol=1e-5)
    np.testing.assert_allclose(whole.variance, samples.var(axis=0).mean(-1), rtol=1e-4)
    with pytest.raises(ValueError, match="do not match"):
        acc.update(samples[:, :2])
    with pytest.raises(ValueError, match="no samples"):
        bayes.MCAccumulator().result()


def test_mc_dropout_predict_batches_the_samples(rng):
    image = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    seen, outputs = [], []

    def sample_fn(images):
        seen.append(images.shape[0])
        assert (images == image).all()  # every batch element is the same image
        out = rng.dirichlet(np.ones(3), size=images.shape[:3])
        outputs.append(out)
        return out

    r = bayes.mc_dropout_predict(sample_fn, image, num_samples=7, batch_size=3)
    assert seen == [3, 3, 1] and r.num_samples == 7
    expected = bayes.summarize_samples(np.concatenate(outputs))
    np.testing.assert_allclose(r.mean, expected.mean, rtol=1e-6)
    with pytest.raises(ValueError, match="expected \\[2, 4, 6, C\\]"):
        bayes.mc_dropout_predict(lambda im: np.ones((2, 3, 3, 2)), image, num_samples=2)
    with pytest.raises(ValueError, match="num_samples"):
        bayes.mc_dropout_predict(sample_fn, image, num_samples=0)


def test_accuracy_by_uncertainty_hand_computed():
    labels = np.array([[0, 0, 1, 1, 255]])
    preds = np.array([[0, 0, 0, 0, 1]])
    unc = np.array([[1.0, 2.0, 3.0, 4.0, 0.0]])  # the void pixel is left out
    table = bayes.accuracy_by_uncertainty(labels, preds, unc, bins=2)
    np.testing.assert_allclose(table["accuracy"], [1.0, 0.0])
    np.testing.assert_allclose(table["mean_uncertainty"], [1.5, 3.5])
    np.testing.assert_allclose(table["pixel_share"], [0.5, 0.5])
    np.testing.assert_allclose(table["lower"], [1.0, 2.5])
    uniform = bayes.accuracy_by_uncertainty([labels, labels], [preds, preds], [unc, unc],
                                            bins=3, strategy="uniform")
    # edges 1, 2, 3, 4: bins [1, 2), [2, 3), [3, 4] (the last one closed)
    assert list(uniform["pixels"]) == [2, 2, 4]
    np.testing.assert_allclose(uniform["accuracy"], [1.0, 1.0, 0.0])


def test_accuracy_by_uncertainty_ties_and_errors():
    labels = np.zeros((3, 3), int)
    table = bayes.accuracy_by_uncertainty(labels, labels, np.ones((3, 3)), bins=5)
    assert len(table) == 1 and table["pixels"].iloc[0] == 9
    with pytest.raises(ValueError, match="every label is void"):
        bayes.accuracy_by_uncertainty(labels + 255, labels, np.ones((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        bayes.accuracy_by_uncertainty(labels, labels, np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="strategy"):
        bayes.accuracy_by_uncertainty(labels, labels, np.ones((3, 3)), strategy="kmeans")
    with pytest.raises(ValueError, match="same shape"):
        bayes.accuracy_by_uncertainty(labels, labels, np.ones((2, 3)))


@pytest.mark.parametrize("mc_dropout", [True, False])
def test_mc_dropout_on_a_bayesian_segnet_graph(rng, mc_dropout):
    from segnet_lib import data, model
    from segnet_lib._tf import tf

    config = model.SegNetConfig(variant="bayesian", width_multiplier=1 / 16)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    with tf.Graph().as_default():
        tf.set_random_seed(0)
        images = tf.placeholder(tf.uint8, [None, None, None, 3])
        logits, _ = model.segnet(data.normalize(images), 5, is_training=False, config=config,
                                 mc_dropout=mc_dropout)
        probs = tf.nn.softmax(logits)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            result = bayes.mc_dropout_predict(
                lambda batch: sess.run(probs, {images: batch}), image, num_samples=4)
    assert result.mean.shape == (32, 32, 5)
    np.testing.assert_allclose(result.mean.sum(-1), 1, rtol=1e-5)
    if mc_dropout:  # each batch element draws its own dropout masks
        assert result.variance.max() > 1e-6 and result.mutual_information.max() > 0
    else:  # dropout off: four identical passes
        np.testing.assert_allclose(result.variance, 0, atol=1e-9)

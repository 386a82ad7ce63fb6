"""A small model-training pipeline in pure Python: make data, split it, train one linear model per
learning rate (fan-out), evaluate each on held-out data, and pick the best (fan-in).

    plait run examples/training.py:train --samples 400 --epochs 60
"""

from __future__ import annotations

import random
from typing import NamedTuple

import msgspec

from plait import task, workflow

LEARNING_RATES = [0.001, 0.01, 0.05, 0.1]


class Dataset(msgspec.Struct, frozen=True):
    xs: list[list[float]]
    ys: list[float]


class Split(NamedTuple):
    train: Dataset
    test: Dataset


class Model(msgspec.Struct, frozen=True):
    weights: list[float]
    bias: float
    learning_rate: float


class Evaluation(msgspec.Struct, frozen=True):
    learning_rate: float
    mse: float
    model: Model


@task
def make_dataset(samples: int, noise: float, seed: int) -> Dataset:
    """y = 3*x0 - 2*x1 + 0.5*x2 + 4 + noise."""
    rng = random.Random(seed)
    xs = [[rng.uniform(-1, 1) for _ in range(3)] for _ in range(samples)]
    ys = [3 * x[0] - 2 * x[1] + 0.5 * x[2] + 4 + rng.gauss(0, noise) for x in xs]
    return Dataset(xs, ys)


@task
def split(data: Dataset, test_fraction: float) -> Split:
    cut = int(len(data.xs) * (1 - test_fraction))
    return Split(Dataset(data.xs[:cut], data.ys[:cut]), Dataset(data.xs[cut:], data.ys[cut:]))


@task
def fit(data: Dataset, learning_rate: float, epochs: int) -> Model:
    """Stochastic gradient descent on squared error."""
    weights, bias = [0.0] * len(data.xs[0]), 0.0
    for _ in range(epochs):
        for x, y in zip(data.xs, data.ys, strict=True):
            error = sum(w * xi for w, xi in zip(weights, x, strict=True)) + bias - y
            weights = [w - learning_rate * error * xi for w, xi in zip(weights, x, strict=True)]
            bias -= learning_rate * error
    return Model([round(w, 4) for w in weights], round(bias, 4), learning_rate)


@task
def evaluate(model: Model, data: Dataset) -> Evaluation:
    errors = [
        (sum(w * xi for w, xi in zip(model.weights, x, strict=True)) + model.bias - y) ** 2
        for x, y in zip(data.xs, data.ys, strict=True)
    ]
    return Evaluation(model.learning_rate, round(sum(errors) / len(errors), 5), model)


@task
def select_best(evaluations: list[Evaluation]) -> Evaluation:
    return min(evaluations, key=lambda e: e.mse)


@workflow
def train(samples: int = 300, noise: float = 0.1, epochs: int = 40, seed: int = 7) -> Evaluation:
    data = make_dataset(samples=samples, noise=noise, seed=seed)
    parts = split(data=data, test_fraction=0.25)
    evaluations = [
        evaluate(model=fit(data=parts.train, learning_rate=rate, epochs=epochs), data=parts.test)
        for rate in LEARNING_RATES
    ]
    return select_best(evaluations=evaluations)

"""The local triage classifier: labelled history in, calibrated label probabilities out.

Three views of a text, combined as a weighted geometric mean and calibrated by one temperature:
- words and character n-grams (TF-IDF) with a linear SVM: strong on short, keyword-heavy requests;
- a sentence embedding against one prototype per label (cosine), when an embedder is available;
- the nearest labelled examples (kNN on embeddings). New examples join this part at once, so a
  reviewer's correction counts before the next full retrain.
The temperature is fitted on out-of-fold predictions, so confidence means what it says.
"""

from __future__ import annotations

import io
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

EPS = 1e-4


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class Weights:
    tfidf: float = 1.0
    prototype: float = 1.0
    knn: float = 1.0
    svm_temperature: float = 0.1
    prototype_scale: float = 20.0
    knn_k: int = 10
    knn_tau: float = 0.05


class TfidfSvm:
    def __init__(self, c: float = 1.0) -> None:
        self.words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        self.chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)
        self.svm = LinearSVC(C=c)

    def fit(self, texts: Sequence[str], y: np.ndarray) -> TfidfSvm:
        x = hstack([self.words.fit_transform(texts), self.chars.fit_transform(texts)]).tocsr()
        self.svm.fit(x, y)
        return self

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        x = hstack([self.words.transform(texts), self.chars.transform(texts)]).tocsr()
        scores = self.svm.decision_function(x)
        return scores if scores.ndim == 2 else np.column_stack([-scores, scores])


def knn_probs(queries: np.ndarray, keys: np.ndarray, key_labels: np.ndarray, n_labels: int, k: int, tau: float,
              exclude_self: bool = False) -> np.ndarray:
    sims = queries @ keys.T
    if exclude_self:
        np.fill_diagonal(sims, -np.inf)
    k = min(k, keys.shape[0] - (1 if exclude_self else 0))
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(sims, idx, axis=1)
    weights = np.exp((top - top.max(axis=1, keepdims=True)) / tau)
    probs = np.zeros((len(queries), n_labels))
    np.add.at(probs, (np.repeat(np.arange(len(queries)), k), key_labels[idx].ravel()), weights.ravel())
    return probs / probs.sum(axis=1, keepdims=True)


def prototypes(vectors: np.ndarray, y: np.ndarray, n_labels: int) -> np.ndarray:
    protos = np.zeros((n_labels, vectors.shape[1]), dtype=np.float32)
    np.add.at(protos, y, vectors)
    return protos / np.linalg.norm(protos, axis=1, keepdims=True).clip(min=1e-12)


@dataclass
class LocalModel:
    labels: list[str]
    tfidf: TfidfSvm
    weights: Weights
    temperature: float
    protos: np.ndarray | None = None  # one unit vector per label
    # kNN memory: grows with every new labelled example, without retraining the rest.
    memory: np.ndarray | None = None
    memory_labels: np.ndarray | None = None
    train_seconds: float = 0.0
    kind: str = field(default="tfidf-svm")

    @property
    def uses_embeddings(self) -> bool:
        return self.protos is not None

    def _logits(self, texts: Sequence[str], vectors: np.ndarray | None) -> np.ndarray:
        w = self.weights
        z = w.tfidf * np.log(softmax(self.tfidf.scores(texts) / w.svm_temperature) + EPS)
        if self.protos is not None and vectors is not None:
            z += w.prototype * np.log(softmax(w.prototype_scale * vectors @ self.protos.T) + EPS)
            if self.memory is not None and self.memory_labels is not None and len(self.memory):
                z += w.knn * np.log(knn_probs(vectors, self.memory, self.memory_labels, len(self.labels),
                                              w.knn_k, w.knn_tau) + EPS)
        return z

    def predict(self, texts: Sequence[str], vectors: np.ndarray | None = None) -> np.ndarray:
        """Calibrated probabilities, one row per text, columns in `labels` order."""
        if self.uses_embeddings and vectors is None:
            raise ValueError("this model was trained with embeddings; pass the texts' vectors")
        return softmax(self._logits(texts, vectors) / self.temperature)

    def remember(self, vectors: np.ndarray, labels: Sequence[str]) -> int:
        """Add labelled examples to the kNN memory; labels the model has never seen are skipped."""
        if self.memory is None or self.memory_labels is None:
            return 0
        index = {label: i for i, label in enumerate(self.labels)}
        keep = [i for i, label in enumerate(labels) if label in index]
        if not keep:
            return 0
        self.memory = np.vstack([self.memory, vectors[keep]])
        self.memory_labels = np.concatenate([self.memory_labels, [index[labels[i]] for i in keep]])
        return len(keep)

    def dumps(self) -> bytes:
        # pickle: the payload is written by our own training job into our own database.
        buffer = io.BytesIO()
        pickle.dump(self, buffer, protocol=pickle.HIGHEST_PROTOCOL)
        return buffer.getvalue()

    @staticmethod
    def loads(payload: bytes) -> LocalModel:
        model = pickle.loads(payload)  # noqa: S301 (see dumps)
        if not isinstance(model, LocalModel):
            raise TypeError("not a LocalModel payload")
        return model


def _fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    def nll(log_t: float) -> float:
        p = softmax(logits / np.exp(log_t))
        return float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())

    return float(np.exp(minimize_scalar(nll, bounds=(np.log(0.02), np.log(50)), method="bounded").x))


def train(
    texts: Sequence[str],
    labels: Sequence[str],
    vectors: np.ndarray | None = None,
    *,
    weights: Weights | None = None,
    folds: int = 5,
    seed: int = 0,
) -> LocalModel:
    """Fit on all examples; the temperature comes from `folds`-fold out-of-fold logits."""
    started = time.perf_counter()
    weights = weights or Weights()
    names = sorted(set(labels))
    index = {label: i for i, label in enumerate(names)}
    y = np.array([index[label] for label in labels])
    texts = list(texts)

    def fit(idx: np.ndarray) -> LocalModel:
        part = [texts[i] for i in idx]
        model = LocalModel(names, TfidfSvm().fit(part, y[idx]), weights, 1.0)
        if vectors is not None:
            model.protos = prototypes(vectors[idx], y[idx], len(names))
            model.memory, model.memory_labels = vectors[idx], y[idx]
            model.kind = "tfidf-svm+embeddings"
        return model

    oof = np.zeros((len(texts), len(names)))
    smallest = min(np.bincount(y))
    if smallest >= 2 and len(names) > 1:
        splitter = StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=seed)
        for train_idx, test_idx in splitter.split(np.zeros(len(y)), y):
            fold_model = fit(train_idx)
            oof[test_idx] = fold_model._logits([texts[i] for i in test_idx],
                                               None if vectors is None else vectors[test_idx])
        temperature = _fit_temperature(oof, y)
    else:
        temperature = 1.0  # too few examples per label to calibrate; stay humble
    model = fit(np.arange(len(texts)))
    model.temperature = temperature
    model.train_seconds = time.perf_counter() - started
    return model

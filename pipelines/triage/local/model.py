"""The local triage classifier: labelled history in, calibrated label probabilities out.

Up to four views of a text, combined as a geometric mean (sum of log-probabilities) and calibrated
by one temperature:
- svm:  a linear SVM on TF-IDF word and character n-grams (plus the frozen sentence embedding when
        there is one): strong on short, keyword-heavy requests, and needs nothing but scikit-learn;
- fknn: the nearest labelled examples by the frozen embedding (the deployment's embedder);
- head: a MiniLM encoder fine-tuned on the history, against one learned vector per label;
- tknn: the nearest labelled examples by the fine-tuned embedding.
The kNN memories grow with every new labelled example, so a reviewer's correction counts at once,
before the next full retrain. The recipe was chosen by 5-fold cross-validation on BANKING77
(bench/triage_quality.py measures it).
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from pipelines.triage.local.finetune import TunedEncoder

EPS = 1e-4


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    probs: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return probs


@dataclass(frozen=True)
class Recipe:
    svm_c_text: float = 1.0  # TF-IDF alone
    svm_c_mixed: float = 0.3  # TF-IDF and the frozen embedding
    svm_embedding_weight: float = 2.0
    svm_tau: float = 0.1
    knn_k: int = 10
    knn_tau: float = 0.05
    head_scale: float = 20.0


def _similarities(queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Cosine similarities of unit vectors. With torch loaded (the encoders), multiply in torch:
    numpy's BLAS threads and torch's would fight over the two cores, a 100 ms stall per case."""
    sims: np.ndarray
    try:
        import torch
    except ImportError:
        sims = queries @ keys.T
        return sims
    sims = (torch.from_numpy(queries) @ torch.from_numpy(keys).T).numpy()
    return sims


class Memory:
    """Unit vectors with their label indices: the kNN part, which learns by appending."""

    def __init__(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.labels = np.asarray(labels, dtype=np.int64)

    def add(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        self.vectors = np.vstack([self.vectors, vectors.astype(np.float32)])
        self.labels = np.concatenate([self.labels, labels])

    def probs(self, queries: np.ndarray, n_labels: int, k: int, tau: float) -> np.ndarray:
        sims = _similarities(np.ascontiguousarray(queries, dtype=np.float32), self.vectors)
        k = min(k, sims.shape[1])
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sims, idx, axis=1)
        weights = np.exp((top - top.max(axis=1, keepdims=True)) / tau)
        probs = np.zeros((len(queries), n_labels))
        np.add.at(probs, (np.repeat(np.arange(len(queries)), k), self.labels[idx].ravel()), weights.ravel())
        normalised: np.ndarray = probs / probs.sum(axis=1, keepdims=True)
        return normalised


@dataclass
class LocalModel:
    labels: list[str]
    recipe: Recipe
    words: TfidfVectorizer
    chars: TfidfVectorizer
    svm: LinearSVC
    temperature: float = 1.0
    frozen: Memory | None = None
    tuned: TunedEncoder | None = None
    tuned_memory: Memory | None = None
    train_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        parts = ["tfidf-svm"] + (["frozen-knn"] if self.frozen else []) + (["tuned-minilm"] if self.tuned else [])
        return "+".join(parts)

    @property
    def uses_embeddings(self) -> bool:
        return self.frozen is not None

    def _features(self, texts: Sequence[str], frozen: np.ndarray | None) -> csr_matrix:
        parts = [self.words.transform(texts), self.chars.transform(texts)]
        if self.frozen is not None and frozen is not None:
            parts.append(csr_matrix(self.recipe.svm_embedding_weight * frozen))
        return hstack(parts).tocsr()

    def logits(self, texts: Sequence[str], frozen: np.ndarray | None = None) -> np.ndarray:
        """Summed log-probabilities of every part, before the temperature."""
        if self.uses_embeddings and frozen is None:
            raise ValueError("this model was trained with embeddings; pass the texts' vectors")
        r, n = self.recipe, len(self.labels)
        scores = self.svm.decision_function(self._features(texts, frozen))
        if scores.ndim == 1:  # two labels: sklearn gives one column
            scores = np.column_stack([-scores, scores])
        z = np.log(softmax(scores / r.svm_tau) + EPS)
        if self.frozen is not None and frozen is not None:
            z += np.log(self.frozen.probs(frozen, n, r.knn_k, r.knn_tau) + EPS)
        if self.tuned is not None and self.tuned_memory is not None:
            tuned = self.tuned.encode(texts)
            z += np.log(softmax(r.head_scale * tuned @ self.tuned.head.T) + EPS)
            z += np.log(self.tuned_memory.probs(tuned, n, r.knn_k, r.knn_tau) + EPS)
        return z

    def predict(self, texts: Sequence[str], frozen: np.ndarray | None = None) -> np.ndarray:
        """Calibrated probabilities, one row per text, columns in `labels` order."""
        return softmax(self.logits(texts, frozen) / self.temperature)

    def remember(self, texts: Sequence[str], labels: Sequence[str], frozen: np.ndarray | None) -> int:
        """Add labelled examples to the kNN memories; labels the model was not trained on wait for
        the next retrain (the other parts have no column for them)."""
        index = {label: i for i, label in enumerate(self.labels)}
        keep = [i for i, label in enumerate(labels) if label in index]
        if not keep or self.frozen is None or frozen is None:
            return 0
        y = np.array([index[labels[i]] for i in keep])
        self.frozen.add(frozen[keep], y)
        if self.tuned is not None and self.tuned_memory is not None:
            self.tuned_memory.add(self.tuned.encode([texts[i] for i in keep]), y)
        return len(keep)

    def dumps(self) -> bytes:
        # pickle: the payload is written by our own training job into our own database.
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(payload: bytes) -> LocalModel:
        model = pickle.loads(payload)  # noqa: S301 (see dumps)
        if not isinstance(model, LocalModel):
            raise TypeError("not a LocalModel payload")
        return model


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of the true labels."""

    def nll(log_t: float) -> float:
        p = softmax(logits / np.exp(log_t))
        return float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())

    return float(np.exp(minimize_scalar(nll, bounds=(np.log(0.02), np.log(50)), method="bounded").x))


def fit_cheap(texts: list[str], y: np.ndarray, names: list[str], frozen: np.ndarray | None,
              recipe: Recipe) -> LocalModel:
    """The recipe without fine-tuning: cheap enough to fit once per fold (calibration, the retrain gate)."""
    words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)
    parts = [words.fit_transform(texts), chars.fit_transform(texts)]
    if frozen is not None:
        parts.append(csr_matrix(recipe.svm_embedding_weight * frozen))
    svm = LinearSVC(C=recipe.svm_c_mixed if frozen is not None else recipe.svm_c_text)
    svm.fit(hstack(parts).tocsr(), y)
    model = LocalModel(names, recipe, words, chars, svm)
    if frozen is not None:
        model.frozen = Memory(frozen, y)
    return model


def train(
    texts: Sequence[str],
    labels: Sequence[str],
    frozen: np.ndarray | None = None,
    *,
    tune_base: str | None = None,
    recipe: Recipe | None = None,
    tuned_temperature: float | None = None,
    folds: int = 5,
    seed: int = 0,
    oof_logits: np.ndarray | None = None,
) -> LocalModel:
    """Fit on all examples.

    Without fine-tuning, the temperature comes from `folds`-fold out-of-fold logits, or from
    `oof_logits` when the caller already cross-validated this recipe (the retrain gate; columns
    in sorted label order). Fine-tuning `folds` times would take minutes, so with it the
    temperature is the one cross-validation found for the full recipe (`tuned_temperature`),
    unless none is given.
    """
    started = time.perf_counter()
    recipe = recipe or Recipe()
    names = sorted(set(labels))
    index = {label: i for i, label in enumerate(names)}
    y = np.array([index[label] for label in labels])
    texts = list(texts)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    model = fit_cheap(texts, y, names, frozen, recipe)
    timings["svm"] = time.perf_counter() - t
    if tune_base is not None:
        from pipelines.triage.local.finetune import fine_tune

        t = time.perf_counter()
        assert frozen is not None, "fine-tuning starts from the frozen embeddings"
        model.tuned = fine_tune(tune_base, texts, y, len(names), frozen)
        timings["fine_tune"] = time.perf_counter() - t
        t = time.perf_counter()
        model.tuned_memory = Memory(model.tuned.encode(texts), y)
        timings["tuned_embed"] = time.perf_counter() - t

    if tune_base is not None and tuned_temperature is not None:
        model.temperature = tuned_temperature
    else:
        t = time.perf_counter()
        smallest = int(np.bincount(y).min())
        if oof_logits is not None:
            model.temperature = fit_temperature(oof_logits, y)
        elif smallest >= 2 and len(names) > 1:
            oof = np.zeros((len(texts), len(names)))
            splitter = StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=seed)
            for train_idx, test_idx in splitter.split(np.zeros(len(y)), y):
                part = fit_cheap([texts[i] for i in train_idx], y[train_idx], names,
                                 None if frozen is None else frozen[train_idx], recipe)
                oof[test_idx] = part.logits([texts[i] for i in test_idx],
                                            None if frozen is None else frozen[test_idx])
            model.temperature = fit_temperature(oof, y)
        timings["calibration"] = time.perf_counter() - t
    model.timings = timings
    model.train_seconds = time.perf_counter() - started
    return model

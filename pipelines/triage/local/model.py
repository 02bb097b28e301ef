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

With few labelled examples per label, the desk's unlabelled cases teach too (self-training): the
model of the labelled examples (the teacher) labels them, those it gives at least
PSEUDO_LABEL_CONFIDENCE join the training, and the model trained on both (the student) names the
label, at no more confidence than the teacher gives that label, the one whose calibration was
measured.
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

from pipelines.triage.local import progress as stages
from pipelines.triage.local.finetune import TunedEncoder

EPS = 1e-4


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    probs: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return probs


# Part of every stored model's history key: bump it when training would give another model.
RECIPE_VERSION = 3

# Self-training applies while the median label has fewer labelled examples than this, and takes
# the teacher's labels of unlabelled cases at or above PSEUDO_LABEL_CONFIDENCE. On BANKING77 at 10
# examples per label, with the other ~6,400 requests of the training folds unlabelled (fold 0):
# 0.852 accuracy without them; 0.854 taking those at or above HIGH (3,430 cases, 99% right: the
# easy ones teach little); 0.871 at 0.6 (6,266 cases, 91% right); 0.861 taking all (84% right).
# A few dozen cases teach nothing measurable and would double every training: it takes at least
# SELF_TRAINING_MIN_CASES of them.
SELF_TRAINING_BELOW = 30
SELF_TRAINING_MIN_CASES = 500
PSEUDO_LABEL_CONFIDENCE = 0.6
PSEUDO_LABELS_PER_EXAMPLE = 10
SELF_TRAINING_MIN_COVERAGE = 0.8


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
    # At or above HIGH_CONFIDENCE only if this (higher) temperature puts the case there too; None:
    # `temperature` alone (models trained before it existed).
    high_temperature: float | None = None
    frozen: Memory | None = None
    tuned: TunedEncoder | None = None
    tuned_memory: Memory | None = None
    # Self-trained: the model of the labelled examples alone, which caps this one's confidence.
    teacher: LocalModel | None = None
    pseudo_labelled: int = 0
    train_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        parts = ["tfidf-svm"] + (["frozen-knn"] if self.frozen else []) + (["tuned-minilm"] if self.tuned else [])
        return "+".join(parts + (["self-trained"] if self.teacher else []))

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
        return self.calibrated(self.logits(texts, frozen))

    def top(self, texts: Sequence[str], frozen: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Each text's best label (index into `labels`) and its confidence. A self-trained model's
        label comes with the lower of its own probability and its teacher's for that label: the
        pseudo-labels sharpen the student beyond any calibration measured on labelled examples."""
        probs = self.predict(texts, frozen)
        rows = np.arange(len(probs))
        best = probs.argmax(axis=1)
        confidence = probs[rows, best]
        if self.teacher is not None:
            confidence = np.minimum(confidence, self.teacher.predict(texts, frozen)[rows, best])
        return best, confidence

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        """Probabilities by the likelihood's temperature, except that a case whose top label reaches
        HIGH_CONFIDENCE keeps it only if the stricter HIGH temperature agrees; otherwise its top
        probability stops just below HIGH. So a case is drafted and reviewed as its likelihood says,
        and sent on its own only when it is right PRECISION_AT_HIGH of the time."""
        probs = softmax(logits / self.temperature)
        if self.high_temperature is None:
            return probs
        rows = np.arange(len(probs))
        top = probs.argmax(axis=1)
        strict = softmax(logits / self.high_temperature)[rows, top]
        demoted = (probs[rows, top] >= HIGH_CONFIDENCE) & (strict < HIGH_CONFIDENCE)
        probs[rows[demoted], top[demoted]] = BELOW_HIGH
        return probs

    def remember(self, texts: Sequence[str], labels: Sequence[str], frozen: np.ndarray | None) -> int:
        """Add labelled examples to the kNN memories; labels the model was not trained on wait for
        the next retrain (the other parts have no column for them)."""
        index = {label: i for i, label in enumerate(self.labels)}
        keep = [i for i, label in enumerate(labels) if label in index]
        if not keep or self.frozen is None or frozen is None:
            return 0
        if self.teacher is not None:
            self.teacher.remember(texts, labels, frozen)
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


# The product's default HIGH confidence (CONFIDENCE_THRESHOLD_HIGH), at and above which a case is
# routed without a person, how often such a case must be right, and where a case the HIGH temperature
# does not vouch for stops.
HIGH_CONFIDENCE = 0.85
PRECISION_AT_HIGH = 0.985
BELOW_HIGH = 0.84


@dataclass(frozen=True)
class Temperatures:
    likelihood: float  # minimises the negative log-likelihood of the true labels
    high: float  # the lowest, from `likelihood` up, at which cases at or above HIGH are right often enough


def fit_temperatures(logits: np.ndarray, y: np.ndarray) -> Temperatures:
    """The likelihood's temperature, and the one for HIGH: raised from it until the cases at or above
    HIGH_CONFIDENCE are right PRECISION_AT_HIGH of the time. With few examples per label the
    likelihood alone is not enough: at 5 per label (text only, BANKING77) it put 40% of held-out
    cases at or above HIGH, and 10% of those were wrong."""

    def nll(log_t: float) -> float:
        p = softmax(logits / np.exp(log_t))
        return float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())

    likelihood = float(np.exp(minimize_scalar(nll, bounds=(np.log(0.02), np.log(50)), method="bounded").x))
    correct = logits.argmax(axis=1) == y
    high = likelihood
    # A higher temperature lowers every case's top probability, so the confident set only shrinks.
    while high < 50:
        confident = softmax(logits / high).max(axis=1) >= HIGH_CONFIDENCE
        if not confident.any() or correct[confident].mean() >= PRECISION_AT_HIGH:
            break
        high *= 1.02
    return Temperatures(likelihood, high)


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


def self_trains(labels: Sequence[str], unlabelled: int | None = None) -> bool:
    """Whether a history with these labels learns from `unlabelled` cases too (None: from the
    cases, if there are enough): its median label has fewer than SELF_TRAINING_BELOW examples."""
    counts = np.unique(np.asarray(labels), return_counts=True)[1]
    small = len(counts) > 1 and float(np.median(counts)) < SELF_TRAINING_BELOW
    return small and (unlabelled is None or unlabelled >= SELF_TRAINING_MIN_CASES)


def train(
    texts: Sequence[str],
    labels: Sequence[str],
    frozen: np.ndarray | None = None,
    *,
    tune_base: str | None = None,
    recipe: Recipe | None = None,
    tuned_temperature: Temperatures | None = None,
    folds: int = 5,
    seed: int = 0,
    oof_logits: np.ndarray | None = None,
    progress: stages.TrainingProgress | None = None,
    unlabelled: Sequence[str] = (),
    unlabelled_frozen: np.ndarray | None = None,
) -> LocalModel:
    """Fit on all examples; with `unlabelled` texts (and their frozen vectors, when there are
    embeddings) and a small history (`self_trains`), self-train: the model of the examples labels
    the texts, and the model returned is trained on the examples and the texts it labelled at or
    above PSEUDO_LABEL_CONFIDENCE, with that first model as its `teacher`."""
    started = time.perf_counter()
    progress = progress or stages.QUIET
    teacher = _fit(texts, labels, frozen, tune_base=tune_base, recipe=recipe, tuned_temperature=tuned_temperature,
                   folds=folds, seed=seed, oof_logits=oof_logits, progress=progress)
    if not self_trains(labels, len(unlabelled)):
        teacher.train_seconds = time.perf_counter() - started
        return teacher
    t = time.perf_counter()
    unlabelled = list(unlabelled)
    progress.stage(stages.PSEUDO_LABELLING, len(unlabelled))
    best_parts, confidence_parts = [], []
    for lo in range(0, len(unlabelled), 1024):  # in slices, so that the progress bar moves
        best, confidence = teacher.top(unlabelled[lo:lo + 1024],
                                       None if unlabelled_frozen is None else unlabelled_frozen[lo:lo + 1024])
        best_parts.append(best)
        confidence_parts.append(confidence)
        progress.advance(len(best))
    best = np.concatenate(best_parts)
    taught = _balanced(best, np.concatenate(confidence_parts), labels, teacher.labels)
    pseudo = best[taught]
    pseudo_seconds = time.perf_counter() - t
    if not _broad(pseudo, labels, teacher.labels):
        teacher.train_seconds = time.perf_counter() - started
        return teacher
    student = _fit(
        list(texts) + [unlabelled[i] for i in taught], list(labels) + [teacher.labels[j] for j in pseudo],
        None if frozen is None or unlabelled_frozen is None else np.vstack([frozen, unlabelled_frozen[taught]]),
        tune_base=tune_base, recipe=recipe, tuned_temperature=tuned_temperature, folds=folds, seed=seed,
        oof_logits=None, progress=progress,  # the caller's out-of-fold logits are of the examples alone
    )
    assert student.labels == teacher.labels, "pseudo-labels come from the teacher's labels"
    student.teacher, student.pseudo_labelled = teacher, len(taught)
    student.timings = {**{f"teacher_{k}": v for k, v in teacher.timings.items()}, "pseudo_labelling": pseudo_seconds,
                       **student.timings}
    student.train_seconds = time.perf_counter() - started
    return student


def _balanced(best: np.ndarray, confidence: np.ndarray, labels: Sequence[str], names: list[str]) -> np.ndarray:
    """The unlabelled cases to train on: those at or above PSEUDO_LABEL_CONFIDENCE, and of each label
    at most PSEUDO_LABELS_PER_EXAMPLE times its labelled examples, the surest first. A desk's traffic
    is skewed; unbounded, its busiest labels would bury the few examples of the others."""
    own = np.unique(np.asarray(labels), return_counts=True)
    cap = dict(zip(own[0].tolist(), (own[1] * PSEUDO_LABELS_PER_EXAMPLE).tolist(), strict=True))
    keep: list[np.ndarray] = []
    for j, name in enumerate(names):
        mine = np.flatnonzero((best == j) & (confidence >= PSEUDO_LABEL_CONFIDENCE))
        keep.append(mine[np.argsort(-confidence[mine], kind="stable")][: cap[name]])
    return np.sort(np.concatenate(keep))


def _broad(pseudo: np.ndarray, labels: Sequence[str], names: list[str]) -> bool:
    """Whether the pseudo-labels reach SELF_TRAINING_MIN_COVERAGE of the labels, as many for each as
    it has labelled examples. Measured (15 BANKING77 labels, 5 examples each, text only: 0.813 alone):
    unlabelled cases of 9 labels only made it 0.783; skewed as 1/rank, 0.823; as 1/rank^1.5, 0.812."""
    own = np.unique(np.asarray(labels), return_counts=True)
    have = np.bincount(pseudo, minlength=len(names))
    wanted = dict(zip(own[0].tolist(), own[1].tolist(), strict=True))
    return float(np.mean([have[j] >= wanted[name] for j, name in enumerate(names)])) >= SELF_TRAINING_MIN_COVERAGE


def _fit(
    texts: Sequence[str],
    labels: Sequence[str],
    frozen: np.ndarray | None,
    *,
    tune_base: str | None,
    recipe: Recipe | None,
    tuned_temperature: Temperatures | None,
    folds: int,
    seed: int,
    oof_logits: np.ndarray | None,
    progress: stages.TrainingProgress,
) -> LocalModel:
    """The recipe on labelled examples, calibrated.

    Without fine-tuning, the temperature comes from `folds`-fold out-of-fold logits, or from
    `oof_logits` when the caller already cross-validated this recipe (the retrain gate; columns
    in sorted label order). Fine-tuning `folds` times would take minutes, so with it the
    temperature is the one cross-validation found for the full recipe (`tuned_temperature`),
    unless none is given.
    """
    recipe = recipe or Recipe()
    names = sorted(set(labels))
    index = {label: i for i, label in enumerate(names)}
    y = np.array([index[label] for label in labels])
    texts = list(texts)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    progress.stage(stages.FITTING, 1)
    model = fit_cheap(texts, y, names, frozen, recipe)
    progress.advance()
    timings["svm"] = time.perf_counter() - t
    if tune_base is not None:
        from pipelines.triage.local.finetune import fine_tune

        t = time.perf_counter()
        assert frozen is not None, "fine-tuning starts from the frozen embeddings"
        model.tuned = fine_tune(tune_base, texts, y, len(names), frozen, progress=progress)
        timings["fine_tune"] = time.perf_counter() - t
        t = time.perf_counter()
        progress.stage(stages.ENCODING, len(texts))
        encoded: list[np.ndarray] = []
        for chunk in np.array_split(np.arange(len(texts)), max(1, -(-len(texts) // 1024))):  # chunks: progress
            encoded.append(model.tuned.encode([texts[i] for i in chunk]))
            progress.advance(len(chunk))
        model.tuned_memory = Memory(np.vstack(encoded), y)
        timings["tuned_embed"] = time.perf_counter() - t

    if tune_base is not None and tuned_temperature is not None:
        model.temperature, model.high_temperature = tuned_temperature.likelihood, tuned_temperature.high
    else:
        t = time.perf_counter()
        smallest = int(np.bincount(y).min())
        if oof_logits is not None:
            progress.stage(stages.CALIBRATING, 1)
            fitted = fit_temperatures(oof_logits, y)
            model.temperature, model.high_temperature = fitted.likelihood, fitted.high
            progress.advance()
        elif smallest >= 2 and len(names) > 1:
            oof = np.zeros((len(texts), len(names)))
            splitter = StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=seed)
            progress.stage(stages.CALIBRATING, splitter.get_n_splits())
            for train_idx, test_idx in splitter.split(np.zeros(len(y)), y):
                part = fit_cheap([texts[i] for i in train_idx], y[train_idx], names,
                                 None if frozen is None else frozen[train_idx], recipe)
                oof[test_idx] = part.logits([texts[i] for i in test_idx],
                                            None if frozen is None else frozen[test_idx])
                progress.advance()
            fitted = fit_temperatures(oof, y)
            model.temperature, model.high_temperature = fitted.likelihood, fitted.high
        timings["calibration"] = time.perf_counter() - t
    model.timings = timings
    return model

"""Incident clusters: a group of similar cases inside the window (default 24 h), whatever triage
called them, that arrived much more often than such texts did over the baseline.

Cases are unit vectors (their embeddings). The recent cases (seeds) are linked to every window case
at cosine ≥ the similarity threshold; each connected group of at least CLUSTER_MIN_SIZE is then
re-centred: its members are the window cases close to the group's centroid. Its expected count is
how many baseline cases lie as close to that centroid (in a random sample of the baseline, scaled
to the window): a question that comes in every day has a cluster every day and a matching baseline,
so it does not fire; a burst of paraphrases of a new failure has none."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pipelines.detection.signals import Kind, Rate, Severity, Signal, Thresholds
from pipelines.detection.volume import EVIDENCE_CASES_MAX

# Cosine similarity at which two requests say the same thing, per embedding model. Paraphrases score
# lower with OpenAI's models than with MiniLM.
_SIMILARITY = {"all-MiniLM-L6-v2": 0.72, "text-embedding-3-small": 0.62, "text-embedding-3-large": 0.58}
DEFAULT_SIMILARITY = 0.7
_CHUNK = 512
_DISPERSION = 2.0
_RATIO = 3.0
_GROUPS_PER_PRODUCT = 64  # closeness of 64 centroids to a 300k-case week: 77 MB


def similarity_for(model: str) -> float:
    return _SIMILARITY.get(model.rsplit("/", 1)[-1], DEFAULT_SIMILARITY)


@dataclass(frozen=True)
class WindowCases:
    ids: Sequence[UUID]
    vectors: np.ndarray  # one unit row per case
    seed: np.ndarray  # bool per case: recent enough to start a cluster from
    titles: Sequence[str]  # subject or first words, for the alert's title
    categories: Sequence[str | None]
    codes: Sequence[Sequence[str]]


@dataclass(frozen=True)
class BaselineSample:
    vectors: np.ndarray  # unit rows drawn at random from the baseline's cases
    scale: float  # baseline cases per sampled case × window length / baseline length


def detect_clusters(window: WindowCases, baseline: BaselineSample, *, similarity: float,
                    window_hours: float, thresholds: Thresholds) -> list[Signal]:
    n = len(window.ids)
    if n < thresholds.cluster_min_size:
        return []
    vectors = np.ascontiguousarray(window.vectors, dtype=np.float32)
    seeds = np.flatnonzero(window.seed)
    rows, cols = [], []
    for start in range(0, len(seeds), _CHUNK):
        chunk = seeds[start:start + _CHUNK]
        near = np.argwhere(vectors[chunk] @ vectors.T >= similarity)
        rows.append(chunk[near[:, 0]])
        cols.append(near[:, 1])
    if not rows:
        return []
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    linked = np.unique(labels[r])  # groups a seed belongs to
    groups = [np.flatnonzero(labels == label) for label in linked if sizes[label] >= thresholds.cluster_min_size]
    ordered = sorted(groups, key=len, reverse=True)
    if not ordered:
        return []
    centroids = np.vstack([vectors[members].mean(axis=0) for members in ordered])
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    centroids /= np.where(norms > 0, norms, 1.0)
    taken = np.zeros(n, dtype=bool)
    signals = []
    for index in range(len(ordered)):
        # A busy day has hundreds of groups: one matrix product per block of them, not a pass over
        # the window and the baseline per group (10 of 17 s at 1M cases).
        if index % _GROUPS_PER_PRODUCT == 0:
            block = centroids[index:index + _GROUPS_PER_PRODUCT]
            closeness_block = block @ vectors.T
            hits_block = np.count_nonzero(block @ baseline.vectors.T >= similarity, axis=1) \
                if len(baseline.vectors) else np.zeros(len(block), dtype=np.int64)
        closeness = closeness_block[index % _GROUPS_PER_PRODUCT]
        close = np.flatnonzero((closeness >= similarity) & ~taken)
        if len(close) < thresholds.cluster_min_size:
            continue
        hits = int(hits_block[index % _GROUPS_PER_PRODUCT])
        # Half a hit of prior: a sample that saw no such case does not prove the rate is zero.
        expected = (hits + 0.5) * baseline.scale if baseline.scale > 0 else 0.0
        # A topic's daily count varies more than Poisson, and the sample's estimate is noisy: a
        # cluster must be three times what is expected, at the dispersion of a busy topic.
        rate = Rate(len(close), expected, _DISPERSION)
        if not thresholds.unusual(rate, thresholds.cluster_min_size, _RATIO):
            continue
        taken[close] = True
        first = int(close.min())  # the window is in arrival order: its identity is its first case
        central = close[int(np.argmax(closeness[close]))]
        spread = Counter(window.categories[i] or "untriaged" for i in close.tolist())
        codes = frozenset(code for i in close.tolist() for code in window.codes[i])
        severity = Severity.HIGH if rate.z >= 2 * thresholds.z else Severity.WARNING
        signals.append(Signal(
            kind=Kind.CLUSTER, fingerprint=f"cluster:{window.ids[first]}", severity=severity,
            title=f"{rate.observed} similar cases in {window_hours:g} h ({rate.expected:.1f} expected): "
                  f"“{window.titles[int(central)]}”",
            figures=rate.figures() | {"similarity": similarity, "window_minutes": round(window_hours * 60),
                                      "categories": dict(spread.most_common(5))},
            case_ids=frozenset(window.ids[i] for i in close[:EVIDENCE_CASES_MAX].tolist()), error_codes=codes,
        ))
    return signals

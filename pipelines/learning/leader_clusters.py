"""Groups of similar unit vectors at a cosine threshold, for up to a week of cases (250k at 1M a
month) in bounded memory and without comparing every pair.

Greedy leader clustering: every vector's density is its count of neighbours at cosine ≥ the
threshold; in order of density (densest first, then row order), a vector becomes a leader unless it
lies within the threshold of an earlier leader; every vector then joins its most similar leader
within the threshold. Leaders are thus the centres of dense regions and no two are alike.

Neighbours are looked for in cells, not everywhere: spherical k-means on a sample (in the sample's
main directions) splits the space into 3√n cells; a vector's home is its nearest cell centre and it
is compared with the vectors whose home is one of its two nearest cells. Two leaders the cells hid
from each other have their groups merged. Up to _EXACT_MAX vectors there is one cell, so every pair
is compared. Products run in blocks of at most _BLOCK × _BLOCK_COLUMNS floats (64 MB). A week at 1M
cases a month, 233k vectors of 384 dimensions, takes about 22 s of CPU (bench/case_groups.py)."""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix

_EXACT_MAX = 8192
_PROBES = 2
_BLOCK = 2048
_BLOCK_COLUMNS = 8192
_KMEANS_SAMPLE = 20_000
_KMEANS_ROUNDS = 5
_ROUTING_DIMS = 64
_CELLS_PER_ROOT = 3  # cells per √rows: more cells, fewer pairs compared, more pairs missed


def leader_clusters(vectors: np.ndarray, *, similarity: float, min_size: int) -> list[np.ndarray]:
    """Row indices of each group of at least `min_size` rows, ascending; the largest group first
    (then the one whose first row comes first)."""
    n = len(vectors)
    if n < max(min_size, 1):
        return []
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    probes = _probes(v)
    cells = _Cells(probes)
    density = _density(v, cells, similarity)
    order = np.lexsort((np.arange(n), -density))
    # A leader with fewer neighbours than min_size - 1 cannot gather a group.
    candidates = order[density[order] >= min_size - 1]
    leaders = _leaders(v, candidates, probes, similarity)
    labels = _assign(v, leaders, cells, probes[leaders, 0], similarity)
    labels = _merge(v, leaders, labels, similarity)
    sizes = np.bincount(labels[labels >= 0], minlength=len(leaders))
    groups = [np.flatnonzero(labels == i) for i in np.flatnonzero(sizes >= min_size)]
    return sorted(groups, key=lambda members: (-len(members), int(members[0])))


def _probes(v: np.ndarray) -> np.ndarray:
    """Each row's nearest cells, nearest first (column 0 is its home). Cells are found in the
    sample's main _ROUTING_DIMS directions: routing needs no more, and it is the cost of comparing
    every row with every cell centre."""
    n = len(v)
    if n <= _EXACT_MAX:
        return np.zeros((n, 1), dtype=np.int32)
    cells = int(_CELLS_PER_ROOT * np.sqrt(n))
    rng = np.random.default_rng(0)  # the same cells for the same vectors
    sample = v[np.sort(rng.choice(n, min(n, _KMEANS_SAMPLE), replace=False))]
    _, directions = np.linalg.eigh(sample.T @ sample)  # ascending: the main ones come last
    basis = np.ascontiguousarray(directions[:, ::-1][:, :_ROUTING_DIMS], dtype=np.float32)
    sample = _unit(sample @ basis)
    centres = sample[rng.choice(len(sample), cells, replace=False)].copy()
    for _ in range(_KMEANS_ROUNDS):
        nearest = np.argmax(sample @ centres.T, axis=1)
        members = csr_matrix((np.ones(len(sample), dtype=np.float32), (nearest, np.arange(len(sample)))),
                             shape=(cells, len(sample)))
        sums = np.asarray(members @ sample)
        filled = np.linalg.norm(sums, axis=1) > 0  # an empty cell keeps its centre
        centres[filled] = _unit(sums[filled])
    probes = np.empty((n, _PROBES), dtype=np.int32)
    for start in range(0, n, _BLOCK):
        scores = _unit(v[start:start + _BLOCK] @ basis) @ centres.T
        rows = np.arange(len(scores))
        for probe in range(_PROBES):  # argmax per probe: an argpartition took 7 s at 250k rows
            best = np.argmax(scores, axis=1)
            probes[start:start + _BLOCK, probe] = best
            scores[rows, best] = -np.inf
    return probes


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: np.ndarray = (rows / np.where(norms > 0, norms, 1.0)).astype(np.float32)
    return unit


class _Cells:
    """Per cell: the rows at home there, and the rows that probe it."""

    def __init__(self, probes: np.ndarray) -> None:
        home = probes[:, 0]
        self._home_rows = np.argsort(home, kind="stable").astype(np.int64)
        cells = int(probes.max()) + 1
        self._home_bounds = np.searchsorted(home[self._home_rows], np.arange(cells + 1))
        flat = probes.ravel()
        by_cell = np.argsort(flat, kind="stable")
        self._probe_rows = (by_cell // probes.shape[1]).astype(np.int64)
        self._probe_bounds = np.searchsorted(flat[by_cell], np.arange(cells + 1))
        self.count = cells

    def home(self, cell: int) -> np.ndarray:
        rows: np.ndarray = self._home_rows[self._home_bounds[cell]:self._home_bounds[cell + 1]]
        return rows

    def probing(self, cell: int) -> np.ndarray:
        rows: np.ndarray = self._probe_rows[self._probe_bounds[cell]:self._probe_bounds[cell + 1]]
        return rows


def _density(v: np.ndarray, cells: _Cells, similarity: float) -> np.ndarray:
    """Each row's neighbours at ≥ similarity among the rows at home in the cells it probes, itself
    not counted. A row is at home in one cell only, so no neighbour is counted twice."""
    counts = np.zeros(len(v), dtype=np.int64)
    for cell in range(cells.count):
        home, probing = cells.home(cell), cells.probing(cell)
        if not len(home) or not len(probing):
            continue
        for d in range(0, len(home), _BLOCK_COLUMNS):
            columns = v[home[d:d + _BLOCK_COLUMNS]].T.copy()
            for q in range(0, len(probing), _BLOCK):
                queries = probing[q:q + _BLOCK]
                counts[queries] += np.count_nonzero(v[queries] @ columns >= similarity, axis=1)
    return counts - 1


def _leaders(v: np.ndarray, candidates: np.ndarray, probes: np.ndarray, similarity: float) -> np.ndarray:
    """The candidates, in their order, that are not within `similarity` of an earlier leader at home
    in one of the cells they probe."""
    per_cell: dict[int, list[int]] = {}
    leaders: list[int] = []
    for row in candidates.tolist():
        vector = v[row]
        covered = False
        for cell in probes[row].tolist():
            earlier = per_cell.get(cell)
            if earlier and float(np.max(v[earlier] @ vector)) >= similarity:
                covered = True
                break
        if not covered:
            leaders.append(row)
            per_cell.setdefault(int(probes[row, 0]), []).append(row)
    return np.asarray(leaders, dtype=np.int64)


def _assign(v: np.ndarray, leaders: np.ndarray, cells: _Cells, leader_home: np.ndarray,
            similarity: float) -> np.ndarray:
    """Each row's most similar leader (index into `leaders`) among those at home in the cells it
    probes, if within `similarity`; else -1."""
    best = np.full(len(v), -np.inf, dtype=np.float32)
    labels = np.full(len(v), -1, dtype=np.int64)
    if not len(leaders):
        return labels
    for cell in np.unique(leader_home).tolist():
        mine = np.flatnonzero(leader_home == cell)
        probing = cells.probing(cell)
        for q in range(0, len(probing), _BLOCK):
            queries = probing[q:q + _BLOCK]
            for d in range(0, len(mine), _BLOCK_COLUMNS):
                chunk = mine[d:d + _BLOCK_COLUMNS]
                scores = v[queries] @ v[leaders[chunk]].T
                top = np.argmax(scores, axis=1)
                value = scores[np.arange(len(queries)), top]
                better = (value >= similarity) & (value > best[queries])
                best[queries[better]] = value[better]
                labels[queries[better]] = chunk[top[better]]
    labels[leaders] = np.arange(len(leaders))  # a leader leads its own group
    return labels


def _merge(v: np.ndarray, leaders: np.ndarray, labels: np.ndarray, similarity: float) -> np.ndarray:
    """A group whose leader lies within `similarity` of an earlier leader joins that leader's group:
    the cells hid them from each other (with one cell, no leader is near another). Leaders that
    gathered nobody are left as they are."""
    if not len(leaders):
        return labels
    sizes = np.bincount(labels[labels >= 0], minlength=len(leaders))
    root = np.arange(len(leaders))
    roots: list[int] = []
    for index in np.flatnonzero(sizes > 1).tolist():
        if roots:
            scores = v[leaders[roots]] @ v[leaders[index]]
            best = int(np.argmax(scores))
            if scores[best] >= similarity:
                root[index] = roots[best]
                continue
        roots.append(index)
    merged: np.ndarray = np.where(labels >= 0, root[np.maximum(labels, 0)], -1)
    return merged

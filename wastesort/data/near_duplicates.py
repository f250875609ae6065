"""Near-duplicate photos: 64-bit perceptual hashes (imagehash's pHash) within a Hamming distance.

Within a class, near-duplicates form groups (connected components of the pairs within the
distance) that the split keeps on one side, so a resized or re-encoded copy of a train photo
never lands in test. Across classes they are possible label conflicts, reported.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from PIL import Image

#: JPEGs are hashed from a decode at the DCT scale that keeps both sides at or above this
#: (Pillow's ``draft``: 1/4 scale for TrashNet's 512x384); pHash looks at 32x32 pixels.
HASH_DECODE_SIDE = 64
HASH_BITS = 64
PAIR_COLUMNS = ["path_a", "label_a", "path_b", "label_b", "distance"]


def phash(image: Image.Image) -> str:
    """The image's 64-bit pHash as 16 hex digits."""
    import imagehash

    return str(imagehash.phash(image))


def close_pairs(hashes: Sequence[str], max_distance: int, block: int = 4_000_000) -> np.ndarray:
    """Rows (i, j, distance), i < j, of hashes at most ``max_distance`` bits apart.

    All pairs are compared, vectorised on the packed 64-bit values, about ``block`` pairs at a
    time."""
    values = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    n = len(values)
    found = [np.zeros((0, 3), np.int64)]
    rows = max(1, block // max(n, 1))
    for start in range(0, n, rows):
        part = values[start : start + rows]
        distance = np.bitwise_count(part[:, None] ^ values[None, :])
        i, j = np.nonzero(distance <= max_distance)
        i += start
        keep = i < j
        found.append(np.stack([i[keep], j[keep], distance[i[keep] - start, j[keep]]], axis=1))
    return np.concatenate(found)


def components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected-component number of each of ``n`` items linked by ``pairs`` (i, j, ...)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def find_near_duplicates(facts: pd.DataFrame, max_distance: int) -> tuple[pd.Series, pd.DataFrame]:
    """Group and pair the rows of ``facts`` (path, label, phash; an empty phash takes no part).

    Returns each row's ``group`` (the path of its group's first file; its own path when alone)
    and the close pairs (``PAIR_COLUMNS``, a before b by path), within and across classes."""
    group = pd.Series(facts["path"].to_numpy(), index=facts.index, dtype=object)
    hashed = facts[facts["phash"] != ""].sort_values("path")
    pairs = close_pairs(hashed["phash"].tolist(), max_distance)
    paths, labels = hashed["path"].to_numpy(), hashed["label"].to_numpy()
    table = pd.DataFrame(
        {
            "path_a": paths[pairs[:, 0]],
            "label_a": labels[pairs[:, 0]],
            "path_b": paths[pairs[:, 1]],
            "label_b": labels[pairs[:, 1]],
            "distance": pairs[:, 2].astype(int),
        },
        columns=PAIR_COLUMNS,
    )
    same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    number = components(len(hashed), pairs[same])
    first = pd.Series(paths).groupby(number).transform("first").to_numpy()  # paths are sorted
    group.loc[hashed.index] = first
    return group, table.sort_values(["path_a", "path_b"]).reset_index(drop=True)


def conflicts_of(facts: pd.DataFrame, pairs: pd.DataFrame) -> pd.Series:
    """Per row, the other-class files it is a near-duplicate of ("label/file (distance d)")."""
    across = pairs[pairs["label_a"] != pairs["label_b"]]
    notes: dict[str, list[str]] = {}
    for r in across.itertuples():
        notes.setdefault(r.path_a, []).append(f"{r.path_b} (distance {r.distance})")
        notes.setdefault(r.path_b, []).append(f"{r.path_a} (distance {r.distance})")
    return facts["path"].map(lambda p: ", ".join(notes.get(p, []))).astype(object)

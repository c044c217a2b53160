"""Splits of a corpus: held-out test speakers, and the partition of the training split into IoT clients.

Test speakers are chosen first and never reach any client (speaker-independent evaluation). Clients then get
indices of the training split by speaker (default: each client holds whole speakers, like one household's device),
IID, or Dirichlet(α) label skew. All functions are pure: indices in, indices out, a seeded generator passed in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedsered.errors import ConfigError, DataError


def split_test_speakers(
    speakers: np.ndarray, *, test_speakers: float | Sequence[str], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Choose held-out test speakers.

    Args:
        speakers: ``[n]`` speaker id of every utterance.
        test_speakers: a fraction of the speakers (at least one speaker is held out, at least one kept), or ids.
        rng: generator for the random choice.

    Returns:
        ``(train_index, test_index)``: sorted integer indices of utterances.
    """
    unique = np.unique(speakers)
    if isinstance(test_speakers, float):
        if len(unique) < 2:
            raise DataError(f"need at least 2 speakers for a speaker-independent test split, found {len(unique)}")
        n_test = int(np.clip(round(test_speakers * len(unique)), 1, len(unique) - 1))
        chosen = rng.choice(unique, size=n_test, replace=False)
    else:
        chosen = np.asarray(list(test_speakers))
        unknown = sorted(set(chosen.tolist()) - set(unique.tolist()))
        if unknown:
            raise ConfigError(f"data.test_speakers: unknown speaker ids {unknown}; corpus speakers: {unique.tolist()}")
        if len(set(chosen.tolist())) >= len(unique):
            raise ConfigError("data.test_speakers: every speaker is a test speaker; keep at least one for training")
    is_test = np.isin(speakers, chosen)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def split_from_manifest(split: np.ndarray | None, speakers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Test set = rows whose manifest ``split`` is ``test``; every other row trains (``data.test_speakers: split``).

    The split must be speaker-independent: a speaker with rows on both sides is an error naming the speaker.

    Returns:
        ``(train_index, test_index)``.
    """
    if split is None:
        raise DataError("data.test_speakers: split, but the manifest has no split column (or it is empty)")
    is_test = split == "test"
    if not is_test.any() or is_test.all():
        raise DataError(
            f"data.test_speakers: split needs rows with split=test and rows without; found values "
            f"{sorted(set(split.tolist()))}"
        )
    both = sorted(set(speakers[is_test].tolist()) & set(speakers[~is_test].tolist()))
    if both:
        raise DataError(
            f"manifest split is not speaker-independent: speaker(s) {both[:5]} have rows in test and in training; "
            "give each speaker one side, or use data.test_speakers as a fraction or list"
        )
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def partition_by_speaker(speakers: np.ndarray, *, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Give each client whole speakers (shuffled, dealt round-robin); every speaker goes to exactly one client."""
    unique = np.unique(speakers)
    if num_clients > len(unique):
        raise ConfigError(
            f"federation.num_clients={num_clients} but the training split has only {len(unique)} speakers; "
            "with federation.partition=speaker each client needs at least one speaker (lower num_clients, or use iid)"
        )
    order = rng.permutation(unique)
    owner = {spk: k % num_clients for k, spk in enumerate(order.tolist())}
    client_of = np.array([owner[s] for s in speakers.tolist()], dtype=np.int64)
    return [np.flatnonzero(client_of == k) for k in range(num_clients)]


def partition_iid(n: int, *, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle and cut into ``num_clients`` near-equal parts."""
    if num_clients > n:
        raise ConfigError(f"federation.num_clients={num_clients} exceeds the {n} training utterances")
    return [np.sort(part) for part in np.array_split(rng.permutation(n), num_clients)]


def partition_dirichlet(
    labels: np.ndarray, *, num_clients: int, alpha: float, rng: np.random.Generator, min_size: int = 1
) -> list[np.ndarray]:
    """Label-skewed split: each class is spread over clients with proportions drawn from Dirichlet(α).

    Redraws (up to 100 times) until every client holds at least ``min_size`` examples.
    """
    if num_clients * min_size > len(labels):
        raise ConfigError(f"federation.num_clients={num_clients} exceeds the {len(labels)} training utterances")
    classes = np.unique(labels)
    for _ in range(100):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(num_clients, alpha))) * len(idx)).astype(int)[:-1]
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].append(chunk)
        out = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(p) for p in out) >= min_size:
            return out
    raise ConfigError(
        f"federation.dirichlet_alpha={alpha}: could not give all {num_clients} clients data; "
        "raise alpha or lower num_clients"
    )


def partition_clients(
    *, labels: np.ndarray, speakers: np.ndarray, scheme: str, num_clients: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Dispatch on ``scheme`` (``speaker`` | ``iid`` | ``dirichlet``); returns one index array per client."""
    if scheme == "speaker":
        return partition_by_speaker(speakers, num_clients=num_clients, rng=rng)
    if scheme == "iid":
        return partition_iid(len(labels), num_clients=num_clients, rng=rng)
    if scheme == "dirichlet":
        return partition_dirichlet(labels, num_clients=num_clients, alpha=alpha, rng=rng)
    raise ConfigError(f"federation.partition: unknown scheme {scheme!r}; expected speaker, iid or dirichlet")


def client_summary(parts: list[np.ndarray], *, labels: np.ndarray, speakers: np.ndarray, n_classes: int) -> list[dict]:
    """Per client: number of utterances, speakers, and utterances per class (for tables and results.json)."""
    rows = []
    for k, idx in enumerate(parts):
        rows.append(
            {
                "client": k,
                "n": len(idx),
                "speakers": sorted(set(speakers[idx].tolist())),
                "per_class": np.bincount(labels[idx], minlength=n_classes).tolist(),
            }
        )
    return rows

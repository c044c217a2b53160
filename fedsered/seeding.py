"""Random streams derived from the run seed, one per role (DESIGN.md: a run is a pure function of config and seed).

Every consumer asks for its stream by a role name (``"corpus"``, ``"partition"``, ``"init"``, ``"client/3"``, ...);
the name is hashed into the ``SeedSequence`` spawn key, so adding a new role never shifts the others.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def _role_key(role: str) -> tuple[int, ...]:
    digest = hashlib.blake2b(role.encode("utf-8"), digest_size=16).digest()
    return tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))


def seed_sequence(seed: int, role: str) -> np.random.SeedSequence:
    """The ``SeedSequence`` for ``role`` under run seed ``seed``."""
    return np.random.SeedSequence(entropy=seed, spawn_key=_role_key(role))


def rng(seed: int, role: str) -> np.random.Generator:
    """A numpy generator for ``role``."""
    return np.random.default_rng(seed_sequence(seed, role))


def int_seed(seed: int, role: str) -> int:
    """A 63-bit integer seed for ``role`` (for torch and other libraries that take an int)."""
    return int(
        seed_sequence(seed, role).generate_state(2, dtype=np.uint32).astype(np.uint64)
        @ np.array([1, 2**32], dtype=np.uint64)
    ) & (2**63 - 1)


def torch_generator(seed: int, role: str) -> torch.Generator:
    """A CPU torch generator for ``role``."""
    gen = torch.Generator()
    gen.manual_seed(int_seed(seed, role))
    return gen

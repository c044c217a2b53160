"""A client's resolved privacy settings: the ``privacy`` section with that client's overrides and the default δ.

``client_privacy(cfg.privacy, client_id=..., n_local=...)`` returns ``None`` when DP is off, else a frozen
``ClientPrivacy``. δ and the sample rate are public constants of the section (nothing published depends on the
client's n); a δ ≥ 1/n_local (which would allow releasing an example outright: the one check that looks at n, and
refuses rather than adapts), a budget below the per-release ε, or an override for a client that does not exist are
``ConfigError``s naming the key and the client.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fedsered.config import PrivacyConfig
from fedsered.errors import ConfigError


@dataclass(frozen=True)
class ClientPrivacy:
    """The DP settings one client distils under.

    Attributes:
        client_id: the client (``None``: the centralised training split).
        target_epsilon: ε of one release; the noise is calibrated to it.
        delta: δ of every release of the client.
        max_grad_norm: clipping bound C.
        accountant: ``"rdp"`` or ``"prv"``.
        budget_epsilon: total ε over all the client's releases (the ledger's cap).
        sample_rate: Poisson rate of each real example per noisy step (every mechanism).
        n_local: examples the client holds (what δ was checked against).
        epsilon_key: the config key ``target_epsilon`` came from (named in errors).
        reproducible_noise: DP randomness derived from the run seed (INSECURE against the server).
    """

    client_id: str | None
    target_epsilon: float
    delta: float
    max_grad_norm: float
    accountant: str
    budget_epsilon: float
    sample_rate: float
    n_local: int
    epsilon_key: str = "privacy.target_epsilon"
    reproducible_noise: bool = False


def client_privacy(cfg: PrivacyConfig, *, client_id: str | None, n_local: int) -> ClientPrivacy | None:
    """Resolve ``cfg`` for one client.

    Args:
        cfg: the ``privacy`` section.
        client_id: the client's id (looked up in ``cfg.clients``), or ``None`` for the centralised split.
        n_local: the client's number of examples.

    Returns:
        ``None`` when ``cfg.enabled`` is false, else the client's settings.

    Raises:
        ConfigError: δ ≥ 1/n_local or a budget smaller than the per-release ε (the message names the key,
            ``privacy.<key>`` or ``privacy.clients.<id>.<key>``, and the client).
    """
    if not cfg.enabled:
        return None
    over = cfg.clients.get(str(client_id)) if client_id is not None else None
    who = f"client {client_id}" if client_id is not None else "the training split"

    def key(name: str) -> str:
        if over is not None and getattr(over, name) is not None:
            return f"privacy.clients.{client_id}.{name}"
        return f"privacy.{name}"

    def pick(name: str) -> float | None:
        value = getattr(over, name) if over is not None else None
        return value if value is not None else getattr(cfg, name)

    if n_local < 1:
        raise ConfigError(f"{who}: no local examples to protect (n_local={n_local})")
    target = float(pick("target_epsilon"))  # type: ignore[arg-type]
    if not target > 0:
        raise ConfigError(f"{key('target_epsilon')}: must be > 0 for {who}, got {target}")
    delta = float(pick("delta"))  # type: ignore[arg-type]
    if delta >= 1.0 / n_local:
        raise ConfigError(
            f"{key('delta')}: {delta:g} for {who} is not below 1/n_local = 1/{n_local} = {1.0 / n_local:.3g} "
            "(a delta that large allows publishing an example outright)"
        )
    budget_cfg = pick("budget_epsilon")
    budget = target if budget_cfg is None else float(budget_cfg)
    if budget < target:
        raise ConfigError(
            f"{key('budget_epsilon')}: {budget:g} for {who} is below the epsilon of one release "
            f"({key('target_epsilon')} = {target:g}); no release could ever be made"
        )
    return ClientPrivacy(
        client_id=client_id,
        target_epsilon=target,
        delta=delta,
        max_grad_norm=float(pick("max_grad_norm")),  # type: ignore[arg-type]
        accountant=cfg.accountant,
        budget_epsilon=budget,
        sample_rate=cfg.sample_rate,
        n_local=int(n_local),
        epsilon_key=key("target_epsilon"),
        reproducible_noise=cfg.reproducible_noise,
    )


def check_overrides(cfg: PrivacyConfig, *, client_ids: Iterable[str]) -> None:
    """Raise ``ConfigError`` for a ``privacy.clients`` key that names no client of the run."""
    known = [str(c) for c in client_ids]
    ids = ", ".join(known) if len(known) <= 6 else f"{', '.join(known[:3])}, ..., {known[-1]} ({len(known)} clients)"
    for cid in cfg.clients:
        if cid not in known:
            raise ConfigError(f"privacy.clients.{cid}: no client {cid!r} in this run; clients are {ids}")

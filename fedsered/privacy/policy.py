"""A client's own privacy policy, and what it does with a server's request: ask for less privacy loss, never more.

The policy is a ``privacy`` section the client holds itself — on a SuperNode a local file (node config
``policy-file``), in simulation the run's YAML handed to the virtual clients outside the server's messages, in-process
the run's config. ``effective_privacy(policy, request, client_id=, pipeline=)`` is the section a client acts under for
one task:

- ``pipeline`` must be in the policy's ``share`` list (default: synthetic sets only), else ``PolicyError``;
- DP is on when the policy or the request turns it on (``dp_fedavg`` always);
- ε of one release is the policy's, or the request's when that is smaller; δ likewise;
- the total budget, C, the accountant, the sample rate and ``reproducible_noise`` are the policy's alone.
"""

from __future__ import annotations

from fedsered.config import FederatedPipeline, PrivacyConfig
from fedsered.errors import FedseredError


class PolicyError(FedseredError):
    """A client's policy forbids what the server asked for."""


def _resolved(cfg: PrivacyConfig, client_id: str, name: str) -> float | None:
    over = cfg.clients.get(client_id)
    value = getattr(over, name) if over is not None else None
    return value if value is not None else getattr(cfg, name)


def _smaller(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def effective_privacy(
    policy: PrivacyConfig, request: PrivacyConfig, *, client_id: str, pipeline: FederatedPipeline
) -> PrivacyConfig:
    """The privacy section client ``client_id`` applies to one task of ``pipeline``.

    Args:
        policy: the client's own ``privacy`` section.
        request: the ``privacy`` section of the server's task.
        client_id: the client (its ``clients`` overrides apply, in both).
        pipeline: the task's pipeline.

    Returns:
        A section without per-client overrides: the policy tightened by the request.

    Raises:
        PolicyError: the policy's ``share`` list does not allow ``pipeline``.
    """
    if pipeline not in policy.share:
        raise PolicyError(
            f"{client_id}: its privacy policy does not allow {pipeline} (privacy.share: [{', '.join(policy.share)}])"
        )
    dp = policy.enabled or request.enabled or pipeline == "dp_fedavg"
    target = own = _resolved(policy, client_id, "target_epsilon")
    budget = _resolved(policy, client_id, "budget_epsilon")
    delta = _resolved(policy, client_id, "delta")
    if request.enabled or pipeline == "dp_fedavg":
        target = _smaller(target, _resolved(request, client_id, "target_epsilon"))
        delta = _smaller(delta, _resolved(request, client_id, "delta"))
    return policy.model_copy(update={
        "enabled": dp, "target_epsilon": target, "delta": delta, "clients": {},
        "budget_epsilon": own if budget is None else budget,  # the policy's, whatever ε the request asks for
        "max_grad_norm": _resolved(policy, client_id, "max_grad_norm"),
    })  # fmt: skip

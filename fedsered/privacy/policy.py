"""A client's own privacy policy, and what it does with a server's request: less privacy loss, never more.

The policy is a ``privacy`` section the client holds itself — on a SuperNode a local file (node config
``policy-file``), in simulation the run's YAML handed to the virtual clients outside the server's messages, in-process
the run's config. ``effective_privacy(policy, request, client_id=, pipeline=)`` is the section a client acts under for
one task, or a ``PolicyError`` naming the rule the request breaks (the client then shares nothing):

- ``pipeline`` must be in the policy's ``share`` list (default: synthetic sets only);
- a policy with ``enabled: true`` requires DP: a pipeline without a DP mechanism (raw sharing, random subset, FedAvg)
  or a non-DP synthetic request is refused, and a request for a larger ε or δ per release than the policy's is
  refused (a smaller one is used);
- a policy without DP accepts DP requests at the request's ε (any DP is less loss than none);
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


NO_DP_MECHANISM: tuple[FederatedPipeline, ...] = ("random_subset", "raw_sharing", "fedavg")
"""Pipelines that share real examples or plain model updates: outside any DP policy."""


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
        A section without per-client overrides: the policy, tightened by the request where it asks for less.

    Raises:
        PolicyError: the request is outside the policy (the message names the rule).
    """
    if pipeline not in policy.share:
        raise PolicyError(
            f"{client_id}: its privacy policy does not allow {pipeline} (privacy.share: [{', '.join(policy.share)}])"
        )
    own_eps, own_delta = _resolved(policy, client_id, "target_epsilon"), _resolved(policy, client_id, "delta")
    budget = _resolved(policy, client_id, "budget_epsilon")
    requested = request.enabled or pipeline == "dp_fedavg"
    if policy.enabled and (pipeline in NO_DP_MECHANISM or not requested):
        raise PolicyError(f"{client_id}: its privacy policy requires DP (privacy.enabled) and {pipeline} was asked "
                          "for without it")  # fmt: skip
    target, delta = own_eps, own_delta
    if requested:
        target, delta = _resolved(request, client_id, "target_epsilon"), _resolved(request, client_id, "delta")
        if policy.enabled and (target > own_eps or delta > own_delta):  # type: ignore[operator]
            raise PolicyError(
                f"{client_id}: the task asks for epsilon {target:g}, delta {delta:g} per release; its privacy policy "
                f"allows at most epsilon {own_eps:g}, delta {own_delta:g}"
            )
    return policy.model_copy(update={
        "enabled": policy.enabled or requested, "target_epsilon": target, "delta": delta, "clients": {},
        "budget_epsilon": own_eps if budget is None else budget,  # the policy's, whatever ε the request asks for
        "max_grad_norm": _resolved(policy, client_id, "max_grad_norm"),
    })  # fmt: skip

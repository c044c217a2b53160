"""Where a merf release's clipping bound goes: the common part of the embeddings against how the classes differ.

Run: ``.venv/bin/python benchmarks/merf_centre.py [--config configs/default.yaml]``. Embeds the config's training
split under the run's K merf networks (θ₀ first, drawn from the public run seed, as every client does under
``federation.merf_synthesis: server``), clips the rows to the embedding bound of ``privacy.max_grad_norm`` after
subtracting each centre, and prints the norm of the clipped rows' mean and the mean distance of the class means from
their average (the between-class signal), beside the norm of the DP noise on one class mean of the 8 clients' summed
release at ε = 8 (σ 0.64). Centres: none, the mean embedding of Gaussian inputs (``merf_centre: noise``), of the
public corpus (``merf_centre: public``, the embedded generator at ``federation.public_seed``, 12 speakers × 5 per
emotion) and, as an oracle no client may use, of the data itself.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIGMA_EPS8 = 0.64
"""σ of merf's one release at ε = 8, δ = 1e-5 (RDP; RESULTS "Server-side merf synthesis")."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "default.yaml")
    args = parser.parse_args()
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from fedsered.config import load_config
    from fedsered.data.dataset import build_dataset
    from fedsered.data.public import load_public
    from fedsered.distill.merf import embedding_nets, mean_embedding, noise_centre
    from fedsered.federation.client import nets_seed
    from fedsered.models import fixed_init_state
    from fedsered.privacy.embeddings import embedding_bound
    from fedsered.privacy.gaussian import clip_rows

    cfg = load_config(args.config, ["federation.public_data={corpus: embedded, embedded: {n_speakers: 12, "
                                    "utterances_per_emotion: 5}}"])  # fmt: skip
    data = build_dataset(cfg)
    theta0 = dict(fixed_init_state(cfg.model, n_classes=data.n_classes))
    nets = embedding_nets(cfg.model, n_classes=data.n_classes, init_state=theta0, seed=nets_seed(cfg.seed),
                          k=cfg.distill.merf_networks)  # fmt: skip
    x, y = data.train.x, data.train.y
    with torch.no_grad():
        emb = torch.cat([nets.raw(torch.from_numpy(x[i : i + 256])) for i in range(0, len(x), 256)])
    bound = embedding_bound(cfg.privacy.max_grad_norm)
    n_c = float(np.bincount(y).mean())
    noise = math.sqrt(cfg.federation.num_clients) * SIGMA_EPS8 * cfg.privacy.max_grad_norm * math.sqrt(emb.shape[1])
    print(f"{len(x)} training clips, {data.n_classes} classes, K = {cfg.distill.merf_networks} nets, width "
          f"{emb.shape[1]}, clip bound {bound:.3f}, median row norm {float(emb.norm(dim=1).median()):.2f}; DP "
          f"noise on one class mean of the {cfg.federation.num_clients} clients' sum at eps 8: {noise / n_c:.3f}")
    centres = {
        "none": None,
        "noise (Gaussian inputs' mean)": noise_centre(nets, data.input_shape, seed=nets_seed(cfg.seed)),
        "public (public corpus's mean)": mean_embedding(nets, load_public(cfg).x),
        "oracle (the data's own mean)": emb.mean(dim=0),
    }
    for name, centre in centres.items():
        rows = clip_rows(emb if centre is None else emb - centre, bound)
        means = torch.stack([rows[torch.from_numpy(y == c)].mean(dim=0) for c in range(data.n_classes)])
        between = float((means - means.mean(dim=0)).norm(dim=1).mean())
        print(f"  centre {name:31s} |mean of clipped rows| {float(rows.mean(dim=0).norm()):.3f}  between-class "
              f"{between:.3f} ({between / bound:.0%} of the bound)")  # fmt: skip


if __name__ == "__main__":
    main()

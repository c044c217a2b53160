"""The configuration schema: one pydantic model per YAML section, with every default defined here and nowhere else.

The names every other module derives from live here too (``DistillMethod``, ``FederatedPipeline``/``PIPELINES``),
and the bounds that keep a config from asking for more than can be allocated (``MAX_SET_BYTES``, ``MAX_IPC``, finite
floats only).
"""

from __future__ import annotations

import reprlib
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

DistillMethod = Literal["random", "herding", "gm", "dm", "mtt", "merf"]
"""Every distillation / selection method (the one place their names are defined)."""
MAX_CONFIG_BYTES = 1 << 20  # a config file or text (the resolved default config is ~6 KB)
MAX_DEPTH = 64  # nested mappings and sequences (a config needs 4)
MAX_NODES = 20_000  # YAML values once every alias is expanded (the resolved default config has ~300)
MAX_NUMBER_CHARS = 100  # an integer scalar (longer ones are slow to build or over Python's digit limit)
MAX_SET_BYTES = 256 << 20  # one synthetic set, or the server's union of them, as float32 (distilling takes ~6x)
MAX_IPC = 10_000  # examples per class of any synthetic set
MIN_EPSILON, MAX_EPSILON = 1e-3, 1e3  # any DP epsilon (outside: calibration fails, or the noise is negligible)

Epsilon = Annotated[float, Field(ge=MIN_EPSILON, le=MAX_EPSILON)]

SetEncoding = Literal["float32", "float16", "int8"]
"""How clients ship a shared set's arrays (``fedsered.federation.encoding``; the one place the names are defined)."""

CorpusName = Literal["embedded", "ravdess", "crema_d", "emodb", "iemocap", "manifest"]


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 60, 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 4


def clip_text(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters (an error message never quotes more)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def excerpt(value: Any) -> str:
    """A bounded repr of ``value`` for error messages (a huge or deeply nested value is abbreviated)."""
    try:
        return clip_text(_REPR.repr(value))
    except ValueError:  # an int beyond Python's digit limit for str()
        return f"<{type(value).__name__}>"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class EmbeddedCorpusConfig(_Section):
    """The procedural emotional-speech generator (the default corpus; no files from outside)."""

    n_speakers: int = Field(12, ge=2, le=1000, description="number of synthetic speakers")
    utterances_per_emotion: int = Field(12, ge=1, le=1000, description="utterances per speaker and emotion")
    duration_s: tuple[float, float] = Field((2.0, 3.0), description="min and max utterance length in seconds")
    difficulty: float = Field(0.5, ge=0.0, le=1.0, description="0 = exaggerated emotions, 1 = subtle and noisy")
    snr_db: float = Field(20.0, ge=-10.0, le=80.0, description="mean background-noise SNR")

    @model_validator(mode="after")
    def _durations(self) -> EmbeddedCorpusConfig:
        lo, hi = self.duration_s
        if not 0.3 <= lo <= hi <= 30.0:
            raise ValueError("duration_s must be [min, max] with 0.3 <= min <= max <= 30")
        return self


class DataConfig(_Section):
    corpus: CorpusName = "embedded"
    path: str | None = Field(None, description="corpus root folder, or the CSV file for corpus=manifest")
    emotions: tuple[str, ...] = Field(
        ("neutral", "happy", "sad", "angry", "fearful"),
        description="the common emotion set; its order is the label index",
    )
    label_map: dict[str, str | None] = Field(
        default_factory=dict,
        description="corpus emotion name -> common emotion (or null to exclude); unlisted names map to themselves",
    )
    on_bad_file: Literal["error", "skip"] = Field(
        "error", description="a corrupt, empty, silent or too-short file: stop with an error, or skip and report it"
    )
    min_duration_s: float = Field(0.25, ge=0.0, le=60.0, description="shorter clips count as bad files")
    test_speakers: float | list[str] | Literal["split", "all"] = Field(
        0.25,
        description="held-out test speakers: a fraction of speakers (0-1), an explicit list of speaker ids, "
        "'split' to take the rows whose manifest split is 'test', or 'all' (a deployed server's own test corpus: "
        "no training speaker, the clients hold their data themselves)",
    )
    embedded: EmbeddedCorpusConfig = EmbeddedCorpusConfig()

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if len(self.emotions) < 2 or len(set(self.emotions)) != len(self.emotions):
            raise ValueError("emotions must list at least two distinct names")
        if isinstance(self.test_speakers, float) and not 0.0 < self.test_speakers < 1.0:
            raise ValueError("test_speakers as a fraction must be strictly between 0 and 1")
        if self.test_speakers == "split" and self.corpus != "manifest":
            raise ValueError("test_speakers: split needs corpus=manifest (a CSV with a split column)")
        if self.corpus != "embedded" and not self.path:
            raise ValueError(f"corpus={self.corpus} needs data.path (the corpus folder or manifest CSV)")
        return self


class FeaturesConfig(_Section):
    """Log-Mel spectrogram settings (librosa filterbank)."""

    sample_rate: int = Field(16000, ge=4000, le=96000)
    n_mels: int = Field(64, ge=8, le=256)
    n_fft: int = Field(1024, ge=64, le=8192)
    hop_length: int = Field(512, ge=16, le=8192)
    fmin: float = Field(0.0, ge=0.0)
    fmax: float | None = Field(None, gt=0.0, description="defaults to sample_rate / 2")
    segment_s: float = Field(
        3.0, gt=0.1, le=60.0, description="fixed clip length: longer clips are centre-cropped, shorter zero-padded"
    )
    top_db: float | None = Field(80.0, gt=0.0, description="dynamic range kept per clip (as librosa.power_to_db)")
    backend: Literal["fast", "librosa"] = Field("fast", description="batched torch path, or librosa's per-clip loop")
    normalise: Literal["fixed", "train_speakers"] = Field(
        "fixed",
        description="fixed: (dB - db_offset) / db_scale, the same for everyone and independent of any data "
        "(what a client can apply alone); train_speakers: per-mel-bin statistics pooled over all training speakers "
        "(centralised comparisons only: it depends on every client's data, outside any DP accounting)",
    )
    db_offset: float = Field(-40.0, ge=-200.0, le=100.0, description="fixed normalisation's offset in dB")
    db_scale: float = Field(20.0, gt=0.1, le=200.0, description="fixed normalisation's scale in dB")
    cache_dir: str | None = Field(".fedsered_cache", description="feature cache folder; null disables caching")

    @model_validator(mode="after")
    def _check(self) -> FeaturesConfig:
        if self.hop_length > self.n_fft:
            raise ValueError("hop_length must not exceed n_fft")
        nyquist = self.sample_rate / 2
        if self.fmax is not None and self.fmax > nyquist:
            raise ValueError(f"fmax must not exceed sample_rate/2 = {nyquist:g}")
        if self.fmin >= (self.fmax or nyquist):
            raise ValueError("fmin must be below fmax")
        return self

    @property
    def n_frames(self) -> int:
        """Frames per clip, as ``fedsered.data.features.n_frames`` counts them (librosa's centred frames)."""
        samples = round(self.segment_s * self.sample_rate)
        return 1 + (samples + 2 * (self.n_fft // 2) - self.n_fft) // self.hop_length


class ModelConfig(_Section):
    name: Literal["cnn6", "cnn_iot", "resnet9"] = "cnn6"
    width: int = Field(16, ge=2, le=512, description="channels of the first block (doubling per block)")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    pooling: Literal["mean_max", "stats"] = Field(
        "mean_max",
        description="head pooling: mean_max (PANNs: frequency averaged, mean + max over time) or stats (4 frequency "
        "bands kept, mean and std over time)",
    )
    init_seed: int = Field(0, ge=0, description="seed of the fixed initialisation theta_0")


class AugmentConfig(_Section):
    """Training-time augmentation of every model fedsered trains (``fedsered.training.augment``)."""

    time_shift: float = Field(0.0, ge=0.0, le=0.5, description="max circular time shift, a fraction of the frames")
    time_masks: int = Field(0, ge=0, le=8, description="SpecAugment time masks per example")
    time_mask: float = Field(0.1, ge=0.0, le=1.0, description="max width of a time mask, a fraction of the frames")
    freq_masks: int = Field(0, ge=0, le=8, description="SpecAugment frequency masks per example")
    freq_mask: float = Field(0.15, ge=0.0, le=1.0, description="max width of a frequency mask, a fraction of the bins")
    mixup: float = Field(0.0, ge=0.0, le=10.0, description="mixup's Beta(a, a) parameter a (0 = no mixup)")


class TrainConfig(_Section):
    epochs: int = Field(30, ge=1, le=10000)
    batch_size: int = Field(32, ge=1, le=65536)
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(1e-4, ge=0.0, le=1.0)
    optimizer: Literal["adam", "sgd"] = "adam"
    augment: AugmentConfig = AugmentConfig()
    default_model: Literal["cnn", "functionals"] = Field(
        "cnn",
        description="the centralised model of record of `fedsered train` on this corpus: listed first, the "
        "top-level result of a one-seed run, and checked against the run's paired verdict (a config names the model "
        "measured better on its corpus; the other stands beside it)",
    )
    threads: int = Field(
        1,
        ge=0,
        le=256,
        description="torch threads while a model trains or a set is distilled (train_model, distil and a "
        "client's DP-SGD set it and restore it after). Conv and linear weight gradients are summed in an order "
        "that depends on the thread count, so a model or a set is bit-identical only at the same count; 0 keeps "
        "the caller's setting (results then depend on the machine)",
    )


class FunctionalsConfig(_Section):
    """The classic SER reference of ``fedsered train``: utterance functionals and a linear classifier.

    Per utterance: mean and std over time of every log-Mel bin, and from the audio the voiced F0 (YIN) median, std
    and range in semitones, the frame energy's mean and std in dB, the voiced fraction and the duration
    (``fedsered.data.functionals``); then median imputation, standardisation and a multinomial logistic regression
    fitted on the training speakers only (``fedsered.models.functionals``).
    """

    f0_min_hz: float = Field(60.0, gt=0.0, le=2000.0, description="lowest F0 YIN searches")
    f0_max_hz: float = Field(500.0, gt=0.0, le=8000.0, description="highest F0 YIN searches (<= sample_rate / 2)")
    frame_s: float = Field(0.064, gt=0.0, le=1.0, description="analysis frame of F0 and energy (>= 2 / f0_min_hz)")
    hop_s: float = Field(0.016, gt=0.0, le=1.0, description="hop between analysis frames")
    voicing_threshold: float = Field(
        0.45,
        gt=0.0,
        lt=1.0,
        description="a frame is voiced when its normalised autocorrelation at the YIN period reaches this",
    )
    C: float = Field(1.0, gt=0.0, le=1e6, description="inverse L2 regularisation strength of the logistic regression")
    max_iter: int = Field(2000, ge=1, le=1_000_000, description="lbfgs iterations of the logistic regression")

    @model_validator(mode="after")
    def _check(self) -> FunctionalsConfig:
        if self.f0_min_hz >= self.f0_max_hz:
            raise ValueError("f0_min_hz must be below f0_max_hz")
        if self.frame_s * self.f0_min_hz < 2.0:
            raise ValueError(
                f"frame_s must hold two periods of f0_min_hz: frame_s >= {2.0 / self.f0_min_hz:g} s at "
                f"f0_min_hz = {self.f0_min_hz:g}"
            )
        if self.hop_s > self.frame_s:
            raise ValueError("hop_s must not exceed frame_s")
        return self


class DsaConfig(_Section):
    """Differentiable siamese augmentation inside dm's matching (``fedsered.distill.dsa``); all 0 = off."""

    time_shift: float = Field(0.0, ge=0.0, le=0.5, description="max circular time shift, a fraction of the frames")
    time_mask: float = Field(0.0, ge=0.0, le=1.0, description="max width of one time mask, share of the frames")
    freq_mask: float = Field(0.0, ge=0.0, le=1.0, description="max width of one Mel-bin mask, share of the bins")


class DistillConfig(_Section):
    """Dataset distillation: methods, synthetic-set size and every method's hyperparameters.

    Defaults are sized for one IoT client (~60 utterances, 5 classes, 64×94 log-Mel, IPC 10): the default method
    (mtt) with ``model.name: cnn6`` (width 16) takes about 40 s of one CPU core, ``cnn_iot`` about 13 s
    (``benchmarks/distill.py``).
    """

    methods: tuple[DistillMethod, ...] = ("mtt",)
    ipc: tuple[Annotated[int, Field(ge=1, le=MAX_IPC)], ...] = Field((10,), description="synthetic examples per class")
    # -- shared by gm, dm, mtt and merf
    init: Literal["real", "noise"] = Field(
        "real", description="synthetic start: random real examples of the class, or Gaussian noise at the data's scale"
    )
    init_noise: float = Field(
        0.05,
        ge=0.0,
        le=10.0,
        description="std (relative to the client's feature std) of the noise on repeated real examples when ipc "
        "exceeds what a class has",
    )
    lr_img: float = Field(0.03, gt=0.0, le=100.0, description="typical step per synthetic feature and update")
    img_optimizer: Literal["adam", "sgd"] = Field(
        "sgd", description="synthetic-feature optimiser: sgd (momentum 0.5) on the rms-normalised gradient, or adam"
    )
    batch_real: int = Field(32, ge=1, le=65536, description="real examples per class and step (gm, dm)")
    # -- mtt (trajectory matching)
    mtt_iterations: int = Field(50, ge=1, le=1_000_000, description="synthetic-set updates (one unroll each)")
    num_experts: int = Field(3, ge=1, le=1000, description="expert trajectories trained on the real data")
    expert_train_epochs: int = Field(8, ge=1, le=10000, description="epochs of each expert (one snapshot per epoch)")
    expert_lr: float = Field(0.05, gt=0.0, le=10.0, description="SGD step size of the experts")
    expert_batch: int = Field(16, ge=1, le=65536, description="expert mini-batch size")
    expert_momentum: float = Field(
        0.0, ge=0.0, lt=1.0, description="SGD momentum of the experts (the student's unrolled steps have none)"
    )
    expert_epochs: int = Field(2, ge=1, le=1000, description="M: expert epochs the student must cover (target t+M)")
    max_start_epoch: int = Field(4, ge=1, le=10000, description="start epoch t is drawn from [0, max_start_epoch)")
    syn_steps: int = Field(8, ge=1, le=10000, description="N: unrolled student SGD steps per update")
    batch_syn: int = Field(10, ge=1, le=65536, description="synthetic examples per student step")
    lr_student: float = Field(0.05, gt=0.0, le=10.0, description="initial learnable student step size")
    lr_lr: float = Field(0.01, ge=0.0, le=10.0, description="Adam step size of the log student step size (0 = fixed)")
    # -- gm (gradient matching, DC)
    gm_iterations: int = Field(10, ge=1, le=1_000_000, description="network initialisations matched")
    gm_outer_loop: int = Field(5, ge=1, le=10000, description="synthetic updates per initialisation")
    gm_inner_steps: int = Field(
        5, ge=0, le=10000, description="SGD steps training the net on the synthetic set in between"
    )
    gm_lr_net: float = Field(0.01, gt=0.0, le=10.0, description="SGD step size of those inner steps")
    # -- dm (distribution matching)
    dm_iterations: int = Field(100, ge=1, le=1_000_000, description="synthetic updates, each with a fresh random net")
    dsa: DsaConfig = Field(
        DsaConfig(), description="siamese augmentation of both sides of every dm match, real and synthetic (DP too)"
    )
    formation: int = Field(
        1, ge=1, le=4,
        description="multi-formation along time (IDC): every stored example decodes into this many examples, each a "
        "T/f-frame segment stretched back to T frames (same bytes, f x the training examples); random and dm only; "
        "1 = off",
    )  # fmt: skip
    # -- merf (one-shot mean embeddings, DP-MERF with frozen random networks)
    merf_networks: int = Field(
        4, ge=1, le=64, description="frozen networks whose concatenated embeddings (each part / sqrt(K)) are released"
    )
    merf_iterations: int = Field(
        200, ge=1, le=1_000_000, description="synthetic updates fitting the released means (post-processing)"
    )
    merf_upsample: int = Field(
        1, ge=1, le=8,
        description="merf synthesis fits each example as a [mels/r, frames/r] image upsampled bilinearly to full size "
        "(a smooth, low-dimensional set; the start is average-pooled to it); 1 = every feature free",
    )  # fmt: skip
    # -- herding
    herding_epochs: int = Field(
        10, ge=0, le=10000, description="epochs of the quick model whose embeddings herding uses (0 = untrained init)"
    )
    # -- evaluation: fresh models trained on the synthetic set
    eval_random_inits: int = Field(3, ge=0, le=1000, description="random initialisations evaluated besides theta_0")
    eval_epochs: int = Field(100, ge=1, le=100000, description="epochs of training on the synthetic set")
    eval_lr: float = Field(3e-3, gt=0.0, le=10.0, description="learning rate of that training")
    eval_batch_size: int = Field(32, ge=1, le=65536, description="mini-batch size of that training")

    @model_validator(mode="after")
    def _check(self) -> DistillConfig:
        if not self.methods or not self.ipc:
            raise ValueError("methods and ipc must be non-empty")
        last_target = self.max_start_epoch - 1 + self.expert_epochs
        if last_target > self.expert_train_epochs:
            raise ValueError(
                f"the latest mtt target epoch, max_start_epoch - 1 + expert_epochs = {last_target}, exceeds "
                f"expert_train_epochs ({self.expert_train_epochs})"
            )
        return self


FederatedPipeline = Literal["synthetic", "raw_sharing", "random_subset", "fedavg", "dp_fedavg", "pooled"]
"""Every federated pipeline (the one place their names are defined)."""
PIPELINES: tuple[FederatedPipeline, ...] = get_args(FederatedPipeline)


class PrivacyClientOverride(_Section):
    """Per-client privacy settings; every key left out takes the ``privacy`` section's value."""

    target_epsilon: Epsilon | None = Field(None, description="epsilon of one release of this client")
    delta: float | None = Field(None, ge=1e-12, lt=1.0, description="this client's delta (must be < 1/n_local)")
    max_grad_norm: float | None = Field(None, ge=1e-6, le=1e6, description="this client's clipping bound C")
    budget_epsilon: Epsilon | None = Field(None, description="this client's total epsilon over all releases")


class PrivacyConfig(_Section):
    """Differential privacy of what a client shares (``fedsered/privacy``; Opacus accountants).

    ``target_epsilon`` is the epsilon of one release (one distillation); the noise multiplier is calibrated to it by
    the accountant from the mechanism's sample rate and steps. ``budget_epsilon`` caps the composition of all releases
    in a client's ledger. ``sample_rate`` and ``delta`` are public constants (nothing about them depends on a
    client's n).
    """

    enabled: bool = False
    target_epsilon: Epsilon = Field(8.0, description="epsilon of one release (the noise is calibrated to it)")
    delta: float = Field(1e-5, ge=1e-12, lt=1.0, description="delta of every release (must be below 1/n_local)")
    max_grad_norm: float = Field(
        1.0, ge=1e-6, le=1e6, description="clipping bound C of per-sample gradients / embeddings"
    )
    accountant: Literal["rdp", "prv"] = "rdp"
    budget_epsilon: Epsilon | None = Field(
        None, description="total epsilon of a client over all its releases (default: target_epsilon)"
    )
    sample_rate: float = Field(
        0.5,
        ge=1e-3,
        le=1.0,
        description="Poisson rate of each real example per noisy step of every mechanism "
        "(gm, dm, the DP-SGD of mtt experts and DP-FedAvg; merf's one release is at rate 1); public: it does not "
        "depend on a client's data",
    )
    reproducible_noise: bool = Field(
        False,
        description="INSECURE against the server: derive DP noise and sampling from the run seed (for tests "
        "and experiments); by default they come from the client's own secret randomness",
    )
    share: tuple[FederatedPipeline, ...] = Field(
        ("synthetic",),
        description="what a client's policy lets it take part in (synthetic sets only by default; "
        "the baselines share real examples or model updates)",
    )
    clients: dict[str, PrivacyClientOverride] = Field(
        default_factory=dict, description="per-client overrides keyed by client id"
    )


class SweepConfig(_Section):
    """The privacy–utility sweep (``fedsered sweep``): every ε × method × seed distils the training split once.

    ``"inf"`` in ``epsilons`` is the non-DP method. ``baselines`` (real-example selections, no DP mechanism) and the
    full-data model are scored once per seed as reference lines.
    """

    epsilons: tuple[float | Literal["inf"], ...] = Field(
        (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, "inf"), description="per-release epsilons; 'inf' = no DP"
    )
    methods: tuple[Literal["gm", "dm", "mtt", "merf"], ...] = ("dm", "gm")
    seeds: tuple[int, ...] = Field((0, 1, 2), description="seeds of distillation and evaluation (one cell each)")
    ipc: int = Field(10, ge=1, le=MAX_IPC, description="synthetic examples per class")
    baselines: tuple[Literal["random", "herding"], ...] = Field(("random",), description="non-DP reference sets")
    full_data: bool = Field(True, description="also train on the whole real training split (reference line)")
    metric: Literal["uar_fixed_init", "uar_random_init"] = Field(
        "uar_fixed_init", description="the UAR plotted (uar_random_init needs distill.eval_random_inits >= 1)"
    )

    @model_validator(mode="before")
    @classmethod
    def _inf(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("epsilons"), list | tuple):
            data = {**data, "epsilons": ["inf" if e == float("inf") else e for e in data["epsilons"]]}
        return data

    @model_validator(mode="after")
    def _check(self) -> SweepConfig:
        if not self.epsilons or not self.methods or not self.seeds:
            raise ValueError("epsilons, methods and seeds must be non-empty")
        lo, hi = MIN_EPSILON, MAX_EPSILON
        bad = [e for e in self.epsilons if e != "inf" and not lo <= e <= hi]
        if bad:
            raise ValueError(f"epsilons must be in [{lo:g}, {hi:g}], or 'inf' for no DP; got {excerpt(bad)}")
        if len(set(self.seeds)) != len(self.seeds) or len(set(self.epsilons)) != len(self.epsilons):
            raise ValueError("epsilons and seeds must not repeat")
        return self


class FederationConfig(_Section):
    """Simulated IoT clients, the server's aggregation, the baselines and the Flower/Ray runtime.

    Default client method: ``dm`` (distribution matching), not the distill section's default ``mtt``: dm costs a
    few CPU seconds per client against ~40 s for mtt with cnn6, which is what keeps ``fedsered simulate`` on the
    default config within minutes on 2 cores (numbers in RESULTS.md).
    """

    num_clients: int = Field(8, ge=1, le=100000)
    partition: Literal["speaker", "iid", "dirichlet"] = "speaker"
    dirichlet_alpha: float = Field(0.5, gt=0.0, description="label-skew concentration for partition=dirichlet")
    # -- the synthetic-sharing pipeline
    method: DistillMethod = Field("dm", description="clients' distillation method")
    ipc: int = Field(3, ge=1, le=MAX_IPC, description="synthetic examples per class each client shares")
    mode: Literal["one_shot", "multi_round"] = Field(
        "one_shot", description="one round, or FedDM-style rounds: clients re-distil against the current global model"
    )
    rounds: int = Field(3, ge=1, le=1000, description="rounds of mode=multi_round")
    merf_synthesis: Literal["client", "server"] = Field(
        "client",
        description="method merf only: client = every client synthesises and shares its own set; server = every "
        "client uploads its one release (noisy per-class sums and counts of clipped embeddings under networks drawn "
        "from the run seed), the server adds them and synthesises one set of server_ipc (default ipc) per "
        "class from noise: post-processing of the releases, the noise of 8 clients averaged out instead of each one's",
    )
    rebalance: bool = Field(
        True, description="server repeats examples of smaller classes of the union up to the largest class's count"
    )
    server_ipc: int | None = Field(
        None, ge=1, le=MAX_IPC,
        description="server-side re-distillation of the union to this size per class (off); under merf_synthesis "
        "server, the size per class of the set the server synthesises (default ipc)",
    )
    server_merf_iterations: int | None = Field(
        None, ge=0, le=1_000_000,
        description="under merf_synthesis server, the updates of the server's synthesis (default "
        "distill.merf_iterations); post-processing, so the server's CPU, not a client's budget, pays for them. "
        "0 = no fit: the server trains on its start as is (with server_start public, the public-only baseline)",
    )  # fmt: skip
    server_start: Literal["noise", "public"] = Field(
        "noise",
        description="under merf_synthesis server, where the server's set starts: noise = Gaussian of server_start_std; "
        "public = server_ipc examples per class drawn from the server's own public corpus (public_data), never any "
        "client's data, so the start stays data-independent of every client",
    )
    merf_centre: Literal["none", "noise", "public"] = Field(
        "none",
        description="under merf_synthesis server, the point every embedding is centred on before it is clipped, on "
        "the clients and the server alike (the server computes it and sends it with the statistics task): none; "
        "noise = the mean embedding of Gaussian inputs drawn from the run seed; public = the mean embedding of the "
        "server's public corpus (public_data). Data-independent of every client, so it moves no epsilon; it spends "
        "the clipping bound on how examples differ instead of on what all of them share. Measured (RESULTS.md): "
        "public lifts DP server synthesis (test speakers, eps 1: +0.110 UAR), noise lowers it",
    )
    server_train_public: bool = Field(
        False,
        description="under merf_synthesis server: the server trains the global model on its synthesised set together "
        "with its public corpus (public_data), class-balanced (every class at the smallest class's size; a balanced "
        "corpus whole); the set it shares stays the synthesised one. Public data plus "
        "what the releases add: compare it with the public-only baseline (server_merf_iterations 0, server_start "
        "public, server_ipc the public corpus's per-class size). Post-processing, so it moves no epsilon",
    )
    server_start_std: float = Field(
        1.0, gt=0.0, le=10.0,
        description="under merf_synthesis server, the std of the server's data-independent Gaussian start "
        "(normalised units)",
    )  # fmt: skip
    public_data: DataConfig | None = Field(
        None,
        description="server_start or merf_centre public, or server_train_public: the server's public labelled "
        "corpus, a data section (corpus, path, embedded, label_map...; its emotions must be the run's); all of its "
        "speakers are used, "
        "test_speakers is ignored",
    )
    public_seed: int = Field(
        20261203, ge=0, le=2**32 - 1,
        description="seed of the public corpus (the embedded generator's draw of its speakers); for an embedded "
        "public corpus it must differ from the run seed, or the public speakers would be the clients' own",
    )  # fmt: skip
    max_payload_mb: float = Field(16.0, gt=0.0, le=4096.0, description="size cap of one client's reply")
    set_encoding: SetEncoding = Field(
        "float32",
        description="how every shared set (synthetic, random_subset, raw_sharing) travels: float32; "
        "float16 (half the bytes of x, |x| must stay within 65504); int8 (x as uint8 per-example affine quantisation, "
        "about a quarter of the bytes, plus a float32 scale and zero per example); y goes as uint8 under float16 and "
        "int8. The server decodes to float32 before aggregating; post-processing, no privacy cost",
    )
    # -- baselines (same partitions, seeds and evaluation)
    baselines: tuple[FederatedPipeline, ...] = Field(
        ("pooled", "raw_sharing", "random_subset", "fedavg"), description="pipelines compared with synthetic sharing"
    )
    server_threads: int = Field(
        2,
        ge=1,
        le=256,
        description="torch threads of the server's global-model training and scoring (the server is a machine, "
        "not an IoT device; clients train and distil at train.threads). Pinned like train.threads, so a global "
        "model is bit-identical at the same count whatever the caller or the machine set",
    )
    linear_reference: bool = Field(
        True,
        description="also fit the log-Mel functionals logistic regression on the examples the server trains the "
        "global CNN on (every pipeline but fedavg / dp_fedavg) and report its UAR beside the CNN's",
    )
    fedavg_rounds: int = Field(
        10, ge=1, le=10000,
        description="rounds of dp_fedavg (its noise is calibrated for all of them); the cap of fedavg's rounds",
    )  # fmt: skip
    fedavg_until_reached: bool = Field(
        True,
        description="stop fedavg at the first round whose global UAR comes within 0.02 of synthetic sharing's (the "
        "round the comparison's byte ratio is read at: the same figure as running every round, for less compute); "
        "false: always run fedavg_rounds",
    )
    fedavg_local_epochs: int = Field(1, ge=1, le=1000, description="local epochs per round of fedavg / dp_fedavg")
    fedavg_weighting: Literal["examples", "uniform"] = Field(
        "examples",
        description="fedavg's weights: each client's reported example count (bounded by "
        "max_client_examples), or equal; dp_fedavg is always uniform (a client's count is private)",
    )
    max_client_examples: int = Field(
        100_000,
        ge=1,
        le=10**9,
        description="largest example count a fedavg reply may claim (a reply above it is "
        "rejected: the count is the client's word and bounds its weight)",
    )
    dp_lr: float = Field(
        0.05, gt=0.0, le=10.0, description="SGD step of dp_fedavg's local DP-SGD (target epsilon over all rounds)"
    )
    ledger_dir: str | None = Field(
        None,
        description="simulate: the virtual clients' ledger folder to continue (their budgets carry over); "
        "null = a fresh counterfactual federation in <out>/clients",
    )
    # -- robustness of a round
    min_fraction: float = Field(
        0.75, gt=0.0, le=1.0, description="a round proceeds when at least this fraction of the clients replied"
    )
    node_wait_s: float = Field(120.0, gt=0.0, description="how long the server waits for the expected nodes")
    round_timeout_s: float = Field(900.0, gt=0.0, description="how long the server waits for the replies of a round")
    discover_timeout_s: float = Field(
        300.0,
        gt=0.0,
        description="how long the server waits for connected nodes to report their partition "
        "(a node's first message pays its start-up: a Ray actor's process and imports)",
    )
    # -- Ray (Flower's simulation engine)
    cpus_per_client: float = Field(1.0, gt=0.0, le=256.0, description="Ray CPUs reserved per virtual client")
    ray_num_cpus: int | None = Field(
        2, ge=1, le=4096, description="CPUs Ray may use (init_args num_cpus); null = all; ignored with ray_address"
    )
    object_store_mb: int = Field(512, ge=64, le=1_000_000, description="Ray object-store cap")
    ray_address: str | None = Field(
        None, description="join an existing cluster (`ray start --head` prints it, e.g. 127.0.0.1:6379)"
    )

    @property
    def uses_public(self) -> bool:
        """Whether the server reads its public corpus (``public_data``): a public start, centre or training set."""
        return "public" in (self.server_start, self.merf_centre) or self.server_train_public

    @model_validator(mode="after")
    def _check_synthesis(self) -> FederationConfig:
        if self.merf_synthesis == "server" and (self.method != "merf" or self.mode != "one_shot"):
            raise ValueError(
                f"merf_synthesis: server needs method: merf and mode: one_shot, got method {self.method}, "
                f"mode {self.mode}"
            )
        if self.server_start == "public" and (self.merf_synthesis != "server" or self.public_data is None):
            raise ValueError(
                "server_start: public needs merf_synthesis: server and a public_data section (the server's own "
                f"public corpus), got merf_synthesis {self.merf_synthesis}, public_data "
                f"{'set' if self.public_data else 'null'}"
            )
        if self.server_train_public and (self.merf_synthesis != "server" or self.public_data is None):
            raise ValueError(
                "server_train_public needs merf_synthesis: server and a public_data section (the server's own "
                f"public corpus), got merf_synthesis {self.merf_synthesis}, public_data "
                f"{'set' if self.public_data else 'null'}"
            )
        needs_public = self.merf_centre == "public"
        if self.merf_centre != "none" and (self.merf_synthesis != "server" or (needs_public and not self.public_data)):
            also = " and a public_data section (the server's own public corpus)" if needs_public else ""
            raise ValueError(
                f"merf_centre: {self.merf_centre} needs merf_synthesis: server{also}, got merf_synthesis "
                f"{self.merf_synthesis}, public_data {'set' if self.public_data else 'null'}"
            )
        return self


class AuditConfig(_Section):
    """Membership-inference audit (``fedsered audit``; ``privacy_audits``).

    The first ``clients`` partitions take part; each holds ``audited_per_client`` audited utterances that are IN a
    random half of the ``shadows`` runs of every pipeline (the rest of its data is always IN). The other partitions'
    speakers are the population the adversary knows (RMIA references, canary sources).
    """

    shadows: int = Field(16, ge=2, le=4096, description="runs per pipeline; each audited utterance is IN half of them")
    pipelines: tuple[str, ...] = Field(
        ("raw_sharing", "random_subset", "synthetic_dm", "fedavg"),
        description="targets: raw_sharing, random_subset, pooled, fedavg, dp_fedavg, synthetic_<method>, "
        "synthetic_<method>_dp_eps<E>",
    )
    clients: int = Field(4, ge=1, le=100000, description="participating clients (the first k partitions)")
    audited_per_client: int = Field(16, ge=1, le=100000, description="audited utterances per participating client")
    population: int = Field(200, ge=1, le=1_000_000, description="population utterances used as RMIA's z samples")
    canaries: int = Field(8, ge=0, le=100000, description="canary utterances (IN half of the runs, like audited ones)")
    canary_kind: Literal["mislabel", "ood"] = Field("mislabel", description="wrong label, or frequency-flipped audio")
    canary_copies: int = Field(1, ge=1, le=10000, description="copies of a canary inserted when it is IN")
    workers: int = Field(2, ge=0, le=4096, description="parallel Ray tasks (1 CPU each); 0 = sequential in-process")
    fpr: tuple[float, ...] = Field((0.001, 0.01), description="false-positive rates at which TPR is reported")
    alpha: float = Field(0.05, gt=0.0, lt=1.0, description="significance of the Clopper-Pearson epsilon lower bound")
    delta: float = Field(1e-5, ge=0.0, lt=1.0, description="delta of the audited (epsilon, delta) guarantee")
    lira_global_variance: bool = Field(True, description="one pooled variance per target (recommended for < 64 runs)")
    rmia_gamma: float = Field(1.0, gt=0.0, description="RMIA likelihood-ratio threshold gamma")
    rmia_offline_a: Annotated[float, Field(ge=0.0, le=1.0)] | Literal["tune"] = Field(
        "tune",
        description="offline RMIA's a in P(x) = ((1+a)/2)P_OUT + (1-a)/2; tune: chosen per target on a "
        "reference run (ML Privacy Meter's way)",
    )
    domias_dim: int = Field(8, ge=1, le=256, description="principal components DOMIAS's densities live in")
    one_run_canaries: int = Field(
        64,
        ge=0,
        le=100000,
        description="one-run audit (Steinke et al. 2023) of every DP target: canaries per run, "
        "each IN with probability 1/2; 0 = off",
    )
    one_run_runs: int = Field(4, ge=1, le=4096, description="independent one-run experiments per DP target (pooled)")
    one_run_fractions: tuple[Annotated[float, Field(gt=0.0, le=1.0)], ...] = Field(
        (1.0, 0.5, 0.25),
        min_length=1,
        max_length=32,
        description="shares of the canaries the one-run guesser "
        "guesses (the rest abstain); fixed in advance, alpha split over them",
    )
    replay_examples: int = Field(
        4,
        ge=0,
        le=1000,
        description="audited examples per run the server-knowledge attack replays (synthetic "
        "targets; 2 client re-computations each; 0 = off)",
    )


class OutputConfig(_Section):
    dir: str = Field("runs/default", description="run folder (overridden by --out)")


class Config(_Section):
    """A whole fedsered run."""

    seed: int = Field(0, ge=0, le=2**32 - 1)
    data: DataConfig = DataConfig()
    features: FeaturesConfig = FeaturesConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    functionals: FunctionalsConfig = FunctionalsConfig()
    distill: DistillConfig = DistillConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    sweep: SweepConfig = SweepConfig()
    federation: FederationConfig = FederationConfig()
    audit: AuditConfig = AuditConfig()
    output: OutputConfig = OutputConfig()

    @model_validator(mode="after")
    def _set_sizes(self) -> Config:
        f, fed = self.features, self.federation
        per_class = {
            "distill.ipc": max(self.distill.ipc),
            "sweep.ipc": self.sweep.ipc,
            "federation.ipc x federation.num_clients": fed.ipc * fed.num_clients,  # the server's union
            "federation.server_ipc": fed.server_ipc or 0,
        }
        n_classes = len(self.data.emotions)
        for key, ipc in per_class.items():
            size = 4 * ipc * n_classes * f.n_mels * f.n_frames
            if size > MAX_SET_BYTES:
                raise ValueError(
                    f"{key}: {ipc} per class x {n_classes} classes x {f.n_mels}x{f.n_frames} features is "
                    f"{size / 2**20:,.0f} MiB of float32, over the {MAX_SET_BYTES >> 20} MiB a synthetic set may take "
                    "(lower it, or features.n_mels / segment_s)"
                )
        return self

    @model_validator(mode="after")
    def _check_public(self) -> Config:
        fed = self.federation
        public = fed.public_data if fed.uses_public else None
        if public is not None and public.emotions != self.data.emotions:
            raise ValueError(
                f"federation.public_data.emotions {list(public.emotions)} must be data.emotions "
                f"{list(self.data.emotions)} (the same labels in the same order)"
            )
        if public is not None and public.corpus == "embedded" and fed.public_seed == self.seed:
            raise ValueError(
                f"federation.public_seed {fed.public_seed} equals seed: an embedded public corpus drawn from the run "
                "seed would hold the clients' own speakers (choose another public_seed)"
            )
        return self

    def to_yaml(self) -> str:
        """The resolved config (defaults filled in) as YAML."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# ---- parsing: limits enforced while composing, before any Python object exists

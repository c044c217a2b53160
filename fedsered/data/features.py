"""Log-Mel spectrograms of fixed-length clips, and per-mel-bin normalisation fitted on training data only.

Two backends compute the same transform (``FeaturesConfig.backend``):

* ``librosa`` — the reference: per clip, ``librosa.feature.melspectrogram`` (Hann window, ``center=True``,
  zero padding, power 2) and ``librosa.power_to_db(ref=1, amin=1e-10, top_db)``.
* ``fast`` — the same numbers from one float64 ``numpy.fft.rfft`` over the stacked frames of a few clips, the
  librosa Slaney filterbank as a sparse (CSR) matrix product and the same float32 ``log10``, on worker threads. It
  matches the reference to about 1e-5 dB (max abs difference; the contract is 1e-4 dB).

Precision: librosa windows its float32 frames with a float64 window, so its FFT runs in float64 and only the
result is rounded to complex64; the power spectrum, the filterbank product and the log then run in float32. The
fast path follows the same chain. A float32 FFT is *not* enough: in low-energy mel bins (60-80 dB below the
clip's peak, still above the ``top_db`` floor) its rounding error reaches 2e-4 to 6e-4 dB.

Speed (default config, 2-3 s clips, an idle 2-CPU machine): librosa's loop ~1,200 clips/s; the fast path ~5,000
on one worker thread and ~7,000-7,900 on two (``benchmarks/features.py``). The float64 FFT is about two thirds of
the work. Frames that see only the zero padding after a short clip are skipped (their power is exactly 0, as in
librosa). Why numpy and not ``torch.stft``/``torch.fft``: torch's CPU ``rfft`` allocates its result (and a
temporary even with ``out=``), and those multi-megabyte allocations page-faulted on every batch in some heap
layouts (up to 3x slower); numpy writes into preallocated buffers. MKL's FFT alone is ~10% faster per frame.

``extract_features`` turns an ``AudioCorpus`` into a ``FeatureSet``, going through the on-disk cache of
``fedsered.data.cache`` when ``cache_dir`` is set.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import scipy.sparse
import torch

from fedsered.config import FeaturesConfig
from fedsered.data.cache import cache_key, load_cached, save_cached, store_or_warn
from fedsered.data.types import AudioCorpus, FeatureSet
from fedsered.errors import DataError

AMIN = 1e-10
"""Power floor before the log (``librosa.power_to_db``'s ``amin``); -100 dB."""

DEFAULT_BATCH_SIZE = 4
"""Clips per FFT call on the fast path (measured best with 2 workers on 2 CPUs; 6 and more fall out of the caches)."""

STD_FLOOR = 1e-3
"""Smallest per-bin standard deviation (dB) the normaliser divides by (bins constant on the training data)."""

Progress = Callable[[int, int], None]


# ---------------------------------------------------------------------------------------------------------------
# shared pieces


def segment_samples(cfg: FeaturesConfig) -> int:
    """Samples per fixed-length segment: ``round(segment_s * sample_rate)``."""
    return round(cfg.segment_s * cfg.sample_rate)


def n_frames(cfg: FeaturesConfig) -> int:
    """Frames per spectrogram with centred frames (``n_fft // 2`` zeros each side), as librosa counts them.

    ``1 + segment_samples // hop_length`` for an even ``n_fft``; one fewer when ``n_fft`` is odd and the hop divides
    the segment.
    """
    return 1 + (segment_samples(cfg) + 2 * (cfg.n_fft // 2) - cfg.n_fft) // cfg.hop_length


def live_frames(cfg: FeaturesConfig, n_valid: int) -> int:
    """Frames of a segment's spectrogram that overlap its first ``n_valid`` samples (the clip before zero padding).

    Later frames see only the padding: their power is exactly 0 (the fast path skips them; in dB they sit at the
    ``top_db`` floor). ``n_valid`` is ``min(len(clip), segment_samples(cfg))``.
    """
    return min(n_frames(cfg), -(-(cfg.n_fft // 2 + n_valid) // cfg.hop_length))


def fix_length(clip: np.ndarray, n_samples: int) -> np.ndarray:
    """Bring a mono clip to exactly ``n_samples`` samples.

    A longer clip is centre-cropped: ``start = (len - n_samples) // 2``, so when the surplus is odd the extra
    sample is dropped from the end. A shorter clip is zero-padded at the end (the speech keeps its onset).

    Args:
        clip: 1-D audio.
        n_samples: target length (>= 1).

    Returns:
        A new 1-D float32 array of length ``n_samples``.
    """
    if n_samples < 1:
        raise ValueError(f"fix_length: n_samples must be >= 1, got {n_samples}")
    out = np.empty(n_samples, dtype=np.float32)
    _fix_into(clip, out)
    return out


def _fix_into(clip: np.ndarray, dst: np.ndarray) -> int:
    """``fix_length`` into an existing array (any float dtype; values rounded to float32 first).

    Returns:
        How many leading samples of ``dst`` come from the clip (the rest is zero padding).
    """
    clip = np.asarray(clip)
    if clip.ndim != 1:
        raise DataError(f"fix_length: expected a 1-D clip, got shape {clip.shape}")
    n, m = clip.shape[0], dst.shape[0]
    if n >= m:
        start = (n - m) // 2
        dst[:] = clip[start : start + m].astype(np.float32, copy=False)
        return m
    dst[:n] = clip.astype(np.float32, copy=False)
    dst[n:] = 0.0
    return n


@functools.lru_cache(maxsize=16)
def _mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, dtype=np.float32)
    basis.setflags(write=False)
    return basis


def mel_filterbank(cfg: FeaturesConfig) -> np.ndarray:
    """The Slaney-normalised librosa Mel filterbank of ``cfg`` (read-only, cached).

    Returns:
        ``[n_mels, 1 + n_fft // 2]`` float32.
    """
    return _mel_basis(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)


# ---------------------------------------------------------------------------------------------------------------
# the reference


def logmel_librosa(clips: Sequence[np.ndarray], cfg: FeaturesConfig) -> np.ndarray:
    """Log-Mel spectrograms with librosa, one clip at a time (the reference).

    Args:
        clips: 1-D clips at ``cfg.sample_rate``; each is ``fix_length``-ed to ``segment_s``.
        cfg: feature settings.

    Returns:
        ``[n, 1, n_mels, n_frames(cfg)]`` float32, in dB (ref 1.0).
    """
    n_samples = segment_samples(cfg)
    out = np.empty((len(clips), 1, cfg.n_mels, n_frames(cfg)), dtype=np.float32)
    for i, clip in enumerate(clips):
        power = librosa.feature.melspectrogram(
            y=fix_length(clip, n_samples),
            sr=cfg.sample_rate,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            n_mels=cfg.n_mels,
            fmin=cfg.fmin,
            fmax=cfg.fmax,
            power=2.0,
            center=True,
            pad_mode="constant",
        )
        out[i, 0] = librosa.power_to_db(power, ref=1.0, amin=AMIN, top_db=cfg.top_db)
    return out


# ---------------------------------------------------------------------------------------------------------------
# the fast path


class _FastLogMel:
    """Reusable buffers and constants of the fast path for one configuration and batch size (one per thread).

    Per batch, with the live frames of all clips stacked along one axis (``n`` in all; frames that see only the zero
    padding after a short clip are skipped: their power is exactly 0) and ``f`` FFT bins, ``m`` mels:

    1. clips rounded to float32 (as ``fix_length``), placed in a zero-padded float64 buffer; frames (strided views)
       times the float64 periodic Hann window -> ``[n, n_fft]`` float64;
    2. one ``numpy.fft.rfft`` in float64 written straight into a transposed complex64 buffer ``[f, n]`` (rounded
       as librosa rounds its STFT);
    3. re and im squared in place, the sparse (CSR) filterbank applied to both at once (``[m, f] @ [f, 2n]``),
       then re^2 + im^2 summed on the small mel result;
    4. scattered into the caller's output array and turned into dB in place.

    No large temporaries: every big array is a buffer allocated once. Fresh multi-megabyte arrays per batch (torch's
    ``rfft`` allocates one even with ``out=``) made glibc hand pages back and fault them in again on every batch,
    up to 3x slower depending on heap layout.
    """

    def __init__(self, cfg: FeaturesConfig, batch_size: int) -> None:
        self.cfg = cfg
        self.n_samples = segment_samples(cfg)
        self.pad = cfg.n_fft // 2
        self.frames = n_frames(cfg)
        self.n_freq = cfg.n_fft // 2 + 1
        from scipy.signal import get_window  # lazy: it loads scipy.stats, ~1 s of a start reading cached features

        self.window = get_window("hann", cfg.n_fft, fftbins=True)  # librosa's window, float64
        self.basis = scipy.sparse.csr_array(mel_filterbank(cfg))  # 3% of a 64 x 513 filterbank is nonzero
        self.padded = np.zeros((batch_size, self.n_samples + 2 * self.pad), dtype=np.float64)
        self.framed = np.lib.stride_tricks.sliding_window_view(self.padded, cfg.n_fft, axis=-1)[:, :: cfg.hop_length]
        capacity = batch_size * self.frames
        self.windowed = np.empty((capacity, cfg.n_fft), dtype=np.float64)
        self.spec_t = np.empty(self.n_freq * capacity, dtype=np.complex64)  # flat: any number of frames

    def live_frames(self, n_valid: int) -> int:
        """Frames that overlap the first ``n_valid`` samples; later ones hold only zero padding."""
        return live_frames(self.cfg, n_valid)

    def __call__(self, clips: Sequence[np.ndarray], out: np.ndarray) -> None:
        """Write the log-Mel of ``clips`` (at most ``batch_size``) into ``out`` (``[len(clips), n_mels, frames]``)."""
        cfg, n_freq = self.cfg, self.n_freq
        spans: list[tuple[int, int]] = []
        total = 0
        for i, clip in enumerate(clips):
            n_valid = _fix_into(clip, self.padded[i, self.pad : self.pad + self.n_samples])
            live = self.live_frames(n_valid)
            np.multiply(self.framed[i, :live], self.window, out=self.windowed[total : total + live])
            spans.append((total, live))
            total += live
        spec_t = self.spec_t[: n_freq * total].reshape(n_freq, total)
        np.fft.rfft(self.windowed[:total], axis=-1, out=spec_t.T)  # type: ignore[arg-type]  # cast on output
        squares = spec_t.view(np.float32)  # [f, 2 * total]: re, im of each frame
        np.square(squares, out=squares)
        mel = (self.basis @ squares).reshape(cfg.n_mels, total, 2)
        power = mel[..., 0] + mel[..., 1]
        for i, (start, live) in enumerate(spans):
            out[i, :, :live] = power[:, start : start + live]
            out[i, :, live:] = 0.0
        _power_to_db_(out, top_db=cfg.top_db)


def _power_to_db_(x: np.ndarray, *, top_db: float | None) -> np.ndarray:
    """In place: ``librosa.power_to_db(ref=1.0, amin=AMIN, top_db)`` per clip of a ``[b, mels, frames]`` batch.

    numpy's float32 ``log10`` is librosa's own (and several times faster than torch's on CPU).
    """
    np.maximum(x, np.float32(AMIN), out=x)
    np.log10(x, out=x)
    x *= np.float32(10.0)
    if top_db is not None:
        floor = x.max(axis=(-2, -1), keepdims=True) - np.float32(top_db)
        np.maximum(x, floor, out=x)
    return x


def logmel_fast(
    clips: Sequence[np.ndarray],
    cfg: FeaturesConfig,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Log-Mel spectrograms in small batches on worker threads; the same numbers as ``logmel_librosa`` (1e-4 dB).

    Each worker thread runs the whole single-threaded pipeline (numpy and scipy, which release the GIL) on its own
    batches with its own buffers. Unlike one OpenMP-parallel pipeline, this keeps its speed when other processes
    compete for the CPUs: OpenMP barriers then stall for whole scheduler time slices.

    Args:
        clips: 1-D clips at ``cfg.sample_rate``; each is ``fix_length``-ed to ``segment_s``.
        cfg: feature settings.
        batch_size: clips per FFT call (small batches are fastest: the frames stay in the CPU caches).
        workers: worker threads; ``None`` uses ``torch.get_num_threads()`` (the process's CPU budget). With 1,
            the batches run in the calling thread.
        progress: optional ``(done, total)`` callback over clips, called from the calling thread after each batch.

    Returns:
        ``[n, 1, n_mels, n_frames(cfg)]`` float32, in dB (ref 1.0).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    n = len(clips)
    out = np.empty((n, 1, cfg.n_mels, n_frames(cfg)), dtype=np.float32)
    starts = range(0, n, batch_size)
    n_workers = min(workers if workers is not None else torch.get_num_threads(), len(starts))
    if n_workers <= 1:
        step = _FastLogMel(cfg, min(batch_size, max(n, 1)))
        for start in starts:
            chunk = clips[start : start + batch_size]
            step(chunk, out[start : start + len(chunk), 0])
            if progress is not None:
                progress(start + len(chunk), n)
        return out
    local = threading.local()

    def run_batch(start: int) -> int:
        step = getattr(local, "step", None)
        if step is None:
            step = local.step = _FastLogMel(cfg, batch_size)
        chunk = clips[start : start + batch_size]
        step(chunk, out[start : start + len(chunk), 0])
        return len(chunk)

    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="fedsered-logmel") as pool:
        futures = [pool.submit(run_batch, start) for start in starts]
        try:
            done = 0
            for future in as_completed(futures):
                done += future.result()
                if progress is not None:
                    progress(done, n)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return out


# ---------------------------------------------------------------------------------------------------------------
# corpus -> features (through the cache)


def _check_rate(corpus: AudioCorpus, cfg: FeaturesConfig) -> None:
    if corpus.sample_rate != cfg.sample_rate:
        raise DataError(
            f"corpus is at {corpus.sample_rate} Hz but features.sample_rate is {cfg.sample_rate} Hz "
            "(resample when loading; feature extraction does not resample)"
        )


def _check_clips(corpus: AudioCorpus) -> None:
    for uid, clip in zip(corpus.utterance_id.tolist(), corpus.audio, strict=True):
        if np.ndim(clip) != 1:
            raise DataError(f"utterance {uid}: expected mono 1-D audio, got shape {np.shape(clip)}")
        if not np.isfinite(clip).all():
            raise DataError(f"utterance {uid}: audio holds NaN or infinite samples")


def _compute(corpus: AudioCorpus, cfg: FeaturesConfig, progress: Progress | None) -> np.ndarray:
    if cfg.backend == "librosa":
        x = logmel_librosa(corpus.audio, cfg)
        if progress is not None:
            progress(len(x), len(x))
        return x
    return logmel_fast(corpus.audio, cfg, progress=progress)


def extract_features(corpus: AudioCorpus, cfg: FeaturesConfig, *, progress: Progress | None = None) -> FeatureSet:
    """Log-Mel features of a whole corpus, from the on-disk cache when possible.

    The corpus must already be at ``cfg.sample_rate`` (nothing is resampled here). With ``cfg.cache_dir`` set, the
    features are stored under a key of the corpus digest, the output-affecting settings and the utterance order
    (``fedsered.data.cache.cache_key``); a later call with the same key loads them instead of extracting (without
    touching the clips: a generated corpus's ``LazyClips`` are then never synthesised). The
    backend is not part of the key: both backends give the same numbers. Labels, speakers and ids always come from
    ``corpus`` (only ``x`` is taken from the cache), so a relabelled corpus can never get stale labels.

    Args:
        corpus: mono clips with labels and provenance.
        cfg: feature settings (``backend`` picks the extractor, ``cache_dir`` enables the cache).
        progress: optional ``(done, total)`` callback over clips.

    Returns:
        ``FeatureSet(x [n, 1, n_mels, frames] float32, labels int64, speaker, utterance_id)``.

    Raises:
        DataError: the corpus sample rate differs from ``cfg.sample_rate``, or a clip is not 1-D finite audio.
    """
    _check_rate(corpus, cfg)
    expected = (len(corpus.audio), 1, cfg.n_mels, n_frames(cfg))
    path: Path | None = None
    if cfg.cache_dir is not None:
        key = cache_key(corpus.digest, cfg, corpus.utterance_id)
        path = Path(cfg.cache_dir) / f"features-{key}.npz"
        cached = load_cached(path, expected_shape=expected)
        if cached is not None and np.array_equal(cached.utterance_id, np.asarray(corpus.utterance_id, dtype=str)):
            if progress is not None:
                progress(expected[0], expected[0])
            return _feature_set(cached.x, corpus)
    _check_clips(corpus)  # only where features are computed: a cache hit is of the same content (its digest)
    fs = _feature_set(_compute(corpus, cfg, progress), corpus)
    if path is not None:
        store_or_warn(path, lambda p: save_cached(p, fs), what="feature cache")
    return fs


def _feature_set(x: np.ndarray, corpus: AudioCorpus) -> FeatureSet:
    return FeatureSet(x, corpus.labels.astype(np.int64), corpus.speaker, corpus.utterance_id)


# ---------------------------------------------------------------------------------------------------------------
# normalisation


@dataclass(frozen=True)
class Normaliser:
    """Per-mel-bin mean and standard deviation in dB, each ``[1, n_mels, 1]`` float32 (broadcast over frames)."""

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        if self.mean.ndim != 3 or self.mean.shape[0] != 1 or self.mean.shape[2] != 1:
            raise DataError(f"Normaliser: mean must be [1, n_mels, 1], got {self.mean.shape}")
        if self.std.shape != self.mean.shape:
            raise DataError(f"Normaliser: std shape {self.std.shape} differs from mean shape {self.mean.shape}")
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all() and (self.std > 0).all()):
            raise DataError("Normaliser: mean and std must be finite and std positive")

    @property
    def n_mels(self) -> int:
        return int(self.mean.shape[1])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"mean": [...], "std": [...]}`` (one float per mel bin)."""
        return {"mean": self.mean.ravel().astype(float).tolist(), "std": self.std.ravel().astype(float).tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normaliser:
        """Inverse of ``to_dict``; raises ``DataError`` on a malformed dict."""
        try:
            mean = np.asarray(data["mean"], dtype=np.float32).reshape(1, -1, 1)
            std = np.asarray(data["std"], dtype=np.float32).reshape(1, -1, 1)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"Normaliser: malformed dict ({exc.__class__.__name__}: {exc})") from None
        return cls(mean=mean, std=std)


def fit_normaliser(x_train: np.ndarray, *, min_std: float = STD_FLOOR) -> Normaliser:
    """Per-mel-bin statistics over clips and frames of the *training* features only.

    Fit this on the training split and apply it to every split: statistics that saw test speakers would leak them
    into training (and into the membership-inference audit).

    Args:
        x_train: ``[n, 1, n_mels, frames]`` training features.
        min_std: floor for the standard deviation (bins that are constant on the training data).

    Returns:
        The ``Normaliser`` (accumulated in float64 one mel bin at a time, stored as float32).
    """
    if x_train.ndim != 4 or x_train.shape[1] != 1 or x_train.shape[0] == 0:
        raise DataError(f"fit_normaliser: expected non-empty [n, 1, mels, frames] features, got {x_train.shape}")
    n_mels = x_train.shape[2]
    mean, std = np.empty(n_mels), np.empty(n_mels)
    for m in range(n_mels):
        values = x_train[:, 0, m, :].astype(np.float64)
        mean[m], std[m] = values.mean(), values.std()
    std = np.maximum(std, min_std)
    return Normaliser(mean=mean.astype(np.float32).reshape(1, -1, 1), std=std.astype(np.float32).reshape(1, -1, 1))


def normalise(x: np.ndarray, norm: Normaliser) -> np.ndarray:
    """``(x - mean) / max(std, STD_FLOOR)`` per mel bin.

    Args:
        x: ``[n, 1, n_mels, frames]`` features (any split).
        norm: statistics fitted on the training split.

    Returns:
        A new float32 array of ``x``'s shape.
    """
    if x.ndim != 4 or x.shape[2] != norm.n_mels:
        raise DataError(f"normalise: expected [n, 1, {norm.n_mels}, frames] features, got {x.shape}")
    std = np.maximum(norm.std, np.float32(STD_FLOOR))
    return ((x.astype(np.float32, copy=False) - norm.mean) / std).astype(np.float32, copy=False)

"""federation.set_encoding: shared sets as float32, float16 or per-example int8, their exact bytes and their checks."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from test_distill import _one_thread  # noqa: F401  (autouse: one torch thread)
from test_federated import DEFAULT, tiny_overrides

from fedsered.config import load_config
from fedsered.data.dataset import build_dataset
from fedsered.distill.synthetic_set import SyntheticSet, make_meta
from fedsered.errors import ConfigError, PayloadError
from fedsered.federation import decode_set, payload_bytes, run_pipeline
from fedsered.federation.encoding import ENCODINGS, decode_arrays, encode_set
from fedsered.federation.payload import decode_local, npy_bytes, wire_form

SHAPE = (1, 32, 38)


def _set(m: int = 6, *, seed: int = 0, cid: str = "client-1") -> SyntheticSet:
    """Typical normalised log-Mel values in [-3, 3]; example 2 constant."""
    x = np.random.default_rng(seed).uniform(-3.0, 3.0, (m, *SHAPE)).astype(np.float32)
    x[2] = np.float32(1.25)
    y = np.arange(m, dtype=np.int64) % 4
    meta = make_meta(method="dm", ipc=2, n_classes=4, features={}, init="theta0:0", client_id=cid)
    return SyntheticSet(x=x, y=y, meta=meta)


def _trip(s: SyntheticSet, encoding: str, *, cap: int = 10**7) -> SyntheticSet:
    return decode_local(s, n_classes=4, expected_shape=SHAPE, max_bytes=cap, source="client-1", encoding=encoding)


def _decode(arrays: dict[str, np.ndarray], meta: str, encoding: str, **kw: object) -> SyntheticSet:
    args: dict = {"to_numpy": np.asarray, "nbytes": npy_bytes, "n_classes": 4, "expected_shape": SHAPE,
                  "max_bytes": 10**7, "source": "client-1", "encoding": encoding, **kw}  # fmt: skip
    return decode_set(arrays, meta, **args)


def test_round_trip_within_each_encodings_error_bound() -> None:
    s = _set()
    for enc in ENCODINGS:
        back = _trip(s, enc)
        assert back.x.dtype == np.float32 and back.y.dtype == np.int64 and np.array_equal(back.y, s.y), enc
        assert back.meta.get("encoding") == (None if enc == "float32" else enc)
    assert np.array_equal(_trip(s, "float32").x, s.x)
    # float16: relative error <= 2^-11 for normal values; below 2^-14 an absolute 2^-25 (subnormal spacing / 2)
    half = _trip(s, "float16").x
    assert np.all(np.abs(half - s.x) <= 1e-3 * np.abs(s.x) + 2.0**-25)
    wire = encode_set(s.x, s.y, encoding="int8")
    q8 = _trip(s, "int8").x
    scale = wire["scale"].reshape(-1, 1, 1, 1)
    ulp = np.spacing(np.float32(3.0))  # float32 rounding of zero + q * scale
    assert np.all(np.abs(q8 - s.x) <= scale / 2 + 2 * ulp)
    assert np.allclose(wire["scale"], (s.x.max(axis=(1, 2, 3)) - s.x.min(axis=(1, 2, 3))) / 255, rtol=1e-6)
    assert np.array_equal(wire["zero"], s.x.min(axis=(1, 2, 3)))
    # every step of the 256 is used on a spread example: min and max map to 0 and 255 and come back exactly
    assert wire["x"][0].min() == 0 and wire["x"][0].max() == 255
    assert q8[0].min() == s.x[0].min()


def test_constant_examples_decode_exactly() -> None:
    x = np.stack([np.full(SHAPE, v, np.float32) for v in (0.0, -2.5, 1e-30, 7.0)])
    wire = encode_set(x, np.zeros(4, np.int64), encoding="int8")
    assert np.array_equal(wire["scale"], np.zeros(4, np.float32)) and not wire["x"].any()
    x_back, _ = decode_arrays(wire, encoding="int8", source="client-1")
    assert np.array_equal(x_back, x)


def _npy_len(a: np.ndarray) -> int:
    buf = io.BytesIO()
    np.save(buf, a)
    return len(buf.getvalue())


def test_payload_bytes_count_exactly_what_is_uploaded() -> None:
    s = _set(40)
    uploaded = {}
    for enc in ENCODINGS:
        arrays, meta = wire_form(s, encoding=enc)
        assert list(arrays) == (["x", "y", "scale", "zero"] if enc == "int8" else ["x", "y"])
        assert (json.loads(meta).get("encoding") == enc) is (enc != "float32")  # float32: the old form, unchanged
        uploaded[enc] = sum(_npy_len(a) for a in arrays.values()) + len(meta.encode("utf-8"))
        assert payload_bytes(s, encoding=enc) == uploaded[enc]
        assert payload_bytes(_trip(s, enc)) == uploaded[enc]  # the server's decoded set knows how it travelled
    x32, x8 = _npy_len(s.x), _npy_len(wire_form(s, encoding="int8")[0]["x"])
    assert 0.24 < x8 / x32 < 0.26
    assert _npy_len(wire_form(s, encoding="float16")[0]["y"]) == _npy_len(s.y) - 7 * len(s.y)  # uint8 labels
    assert uploaded["int8"] < uploaded["float16"] < uploaded["float32"]
    assert payload_bytes(s) == uploaded["float32"]  # a set that records no encoding is float32


def test_each_defect_is_one_payload_error_naming_the_client() -> None:
    s = _set()
    arrays8, meta8 = wire_form(s, encoding="int8")
    arrays32, meta32 = wire_form(s, encoding="float32")
    # a float32 set under int8: the arrays int8 needs are missing
    with pytest.raises(PayloadError, match=r"client-1: .*exactly the arrays \['x', 'y', 'scale', 'zero'\]"):
        _decode(arrays32, meta32, "int8")
    with pytest.raises(PayloadError, match=r"client-1: x must be uint8.*set_encoding=int8, got float32"):
        _decode({**arrays8, "x": s.x}, meta8, "int8")
    with pytest.raises(PayloadError, match=r"client-1: y must be uint8 \[6\]"):
        _decode({**arrays8, "y": s.y}, meta8, "int8")
    with pytest.raises(PayloadError, match=r"client-1: scale must be float32 \[6\]"):
        _decode({**arrays8, "scale": arrays8["scale"][:5]}, meta8, "int8")
    with pytest.raises(PayloadError, match=r"client-1: x must be float32.*set_encoding=float32, got float16"):
        _decode({"x": s.x.astype(np.float16), "y": s.y}, meta32, "float32")
    # the metadata must record the server's encoding
    with pytest.raises(PayloadError, match=r"client-1: set records encoding 'float32', .*set_encoding=float16"):
        _decode({"x": s.x.astype(np.float16), "y": s.y.astype(np.uint8)}, meta32, "float16")
    # quantisation parameters: finite, scale non-negative
    for name, bad in (("scale", np.nan), ("scale", -0.1), ("zero", np.inf)):
        hurt = {**arrays8, name: arrays8[name].copy()}
        hurt[name][1] = bad
        with pytest.raises(PayloadError, match="client-1: int8 scale must be finite and non-negative"):
            _decode(hurt, meta8, "int8")
    huge = {**arrays8, "scale": np.full(6, 3e38, np.float32)}  # finite, but zero + 255 * scale overflows
    with pytest.raises(PayloadError, match=r"client-1: x holds .* non-finite"):
        _decode(huge, meta8, "int8")

    def never(_: object) -> np.ndarray:
        raise AssertionError("an oversized payload must be refused before it is decoded")

    cap = payload_bytes(s, encoding="int8") - 1
    with pytest.raises(PayloadError, match=rf"client-1: payload of {cap + 1} bytes is above the cap of {cap}"):
        _decode(arrays8, meta8, "int8", to_numpy=never, max_bytes=cap)
    assert len(_trip(s, "int8", cap=cap + 1)) == 6  # exactly at the cap: accepted


def test_the_client_refuses_what_the_encoding_cannot_carry() -> None:
    s = _set()
    loud = SyntheticSet(x=s.x * 3e4, y=s.y, meta=s.meta)  # |x| up to 9e4 > 65504
    with pytest.raises(PayloadError, match=r"client client-1: \|x\| reaches .* beyond float16's largest"):
        wire_form(loud, encoding="float16")
    assert np.allclose(_trip(loud, "int8").x, loud.x, atol=6e4 * 3 / 255)  # int8 carries any finite range
    with pytest.raises(PayloadError, match=r"labels must lie in 0\.\.255"):
        encode_set(s.x, s.y + 300, encoding="int8")
    with pytest.raises(PayloadError, match="unknown set encoding 'int4'"):
        encode_set(s.x, s.y, encoding="int4")


def test_config_key(tmp_path: Path) -> None:
    assert load_config(DEFAULT, []).federation.set_encoding == "float32"
    assert load_config(DEFAULT, ["federation.set_encoding=int8"]).federation.set_encoding == "int8"
    with pytest.raises(ConfigError, match="set_encoding"):
        load_config(DEFAULT, ["federation.set_encoding=int4"])


@pytest.mark.slow
def test_an_int8_federation_uploads_fewer_bytes(tmp_path: Path) -> None:
    cfg = load_config(DEFAULT, tiny_overrides(tmp_path))
    data = build_dataset(cfg)
    q8 = cfg.model_copy(update={"federation": cfg.federation.model_copy(update={"set_encoding": "int8"})})
    for pipeline in ("synthetic", "random_subset"):  # every shared set of a run goes in the run's encoding
        plain = run_pipeline(cfg, data, pipeline=pipeline, seed=3)
        small = run_pipeline(q8, data, pipeline=pipeline, seed=3)
        assert all(c.status == "ok" for c in small.clients), [c.error for c in small.clients]
        assert small.bytes_up_total < plain.bytes_up_total, pipeline
        assert small.bytes_up_total == sum(payload_bytes(s) for s in small.sets.values())
        assert all(s.x.dtype == np.float32 and s.meta["encoding"] == "int8" for s in small.sets.values())
        assert 0.0 <= small.uar <= 1.0  # computed; nothing is claimed about its value

"""Hostile config text (a file, a ``--set`` value, the server's broadcast): one short ``ConfigError``, bounded work."""

from pathlib import Path

import pytest

from fedsered.config import MAX_CONFIG_BYTES, MAX_DEPTH, MAX_NODES, Config, config_from_text, load_config
from fedsered.data.features import n_frames
from fedsered.errors import ConfigError

MAX_MESSAGE = 400  # a message names the place and what was expected, and quotes at most ~80 chars of the value


def billion_laughs(key: str) -> str:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    head, _, leaf = key.rpartition(".")
    return "\n".join(lines) + (f"\n{head}:\n  {leaf}: *l8\n" if head else f"\n{leaf}: *l8\n")


def error_of(text: str, source: str = "peer") -> str:
    with pytest.raises(ConfigError) as info:
        config_from_text(text, source=source)
    msg = str(info.value)
    assert msg.startswith(f"{source}: ") and "\n" not in msg and len(msg) < MAX_MESSAGE, msg
    return msg


@pytest.mark.parametrize("key", ["data.emotions", "seed"])
def test_alias_bomb_is_refused_while_composing(key: str) -> None:
    assert "aliases" in error_of(billion_laughs(key))


def test_a_few_aliases_still_work() -> None:
    text = "privacy:\n  clients:\n    a: &o {target_epsilon: 2.0}\n    b: *o\n"
    cfg = config_from_text(text, source="s")
    assert cfg.privacy.clients["a"] == cfg.privacy.clients["b"]
    assert cfg.privacy.clients["b"].target_epsilon == 2.0


def test_recursive_alias_is_refused() -> None:
    assert "recursive alias" in error_of("seed: &a [*a]\n")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 50_000])
def test_deep_nesting_is_one_error(depth: int) -> None:
    msg = error_of("seed: " + "[" * depth + "]" * depth + "\n")
    assert f"nesting deeper than {MAX_DEPTH}" in msg


def test_nesting_up_to_the_limit_parses() -> None:
    # depth MAX_DEPTH counts the top-level mapping: seed's value may nest MAX_DEPTH - 1 levels
    assert "Input should be a valid integer" in error_of("seed: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))


def test_oversized_text_is_refused_before_parsing() -> None:
    assert f"larger than {MAX_CONFIG_BYTES} bytes" in error_of("#" * MAX_CONFIG_BYTES + "\n")


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("data:\n  path: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml: not UTF-8 text: byte 0xe9 at line 2"):
        load_config(path)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_endless_file_is_read_only_up_to_the_limit() -> None:
    with pytest.raises(ConfigError, match=rf"^/dev/zero: larger than {MAX_CONFIG_BYTES} bytes"):
        load_config("/dev/zero")


def test_directory_as_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config"):
        load_config(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a date the YAML resolver accepts and datetime refuses
        ("seed: 2001-13-45\n", "line 1, column 7: invalid value '2001-13-45' (month must be in 1..12)"),
        # over Python's digit limit of int(str)
        ("seed: " + "1" * 5000 + "\n", "refused at line 1, column 7: a number of 5000 characters"),
        ("seed: 1" + ":1" * 100_000 + "\n", "a number of 200001 characters"),  # sexagesimal: quadratic to build
        ("a: \x00\n", "unacceptable character"),
        ("data: [" + "x, " * MAX_NODES + "]\n", f"more than {MAX_NODES} values"),  # plain values count too
        ("seed: !!python/object:os.system x\n", "could not determine a constructor"),
    ],
)
def test_hostile_scalars_and_tags(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_errors_quote_a_bounded_excerpt() -> None:
    long = "x" * 100_000
    assert "got 'xxxx" in error_of(f"data:\n  corpus: {long}\n")
    assert "unknown key" in error_of(f"{long[:1000]}: 1\n")
    assert "(got [0, 1, 2, 3, ...])" in error_of("seed: [" + ", ".join(map(str, range(10_000))) + "]\n")
    epsilons = "sweep:\n  epsilons: [" + ", ".join(["-1"] * 5000) + "]\n"
    assert "must be in [0.001, 1000], or 'inf' for no DP; got [-1.0, -1.0, -1.0, -1.0, ...]" in error_of(epsilons)


def test_misspelt_client_override_lists_its_keys() -> None:
    msg = error_of("privacy:\n  clients:\n    c1:\n      target_epsilonn: 1\n")
    allowed = "target_epsilon, delta, max_grad_norm, budget_epsilon"
    assert msg.endswith(f"privacy.clients.c1.target_epsilonn: unknown key; allowed here: {allowed}")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ("distill.ipc=[1000000000]", "distill.ipc.0: Input should be less than or equal to 10000"),
        ("distill.ipc=[10000]", "distill.ipc: 10000 per class x 5 classes x 64x94 features"),
        ("sweep.ipc=5000", "sweep.ipc: 5000 per class"),
        ("federation.ipc=500", "federation.ipc x federation.num_clients: 4000 per class"),
        ("federation.server_ipc=9000", "federation.server_ipc: 9000 per class"),
        ("features.hop_length=16 features.segment_s=60", "distill.ipc: 10 per class x 5 classes x 64x60001 features"),
    ],
)
def test_sizes_are_bounded_by_what_can_be_allocated(overrides: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides.split())
    assert expected in str(info.value) and len(str(info.value)) < MAX_MESSAGE


def test_frames_match_the_feature_extractor() -> None:
    for hop, fft in ((512, 1024), (160, 400), (100, 401), (16, 64)):
        f = Config().features.model_copy(update={"hop_length": hop, "n_fft": fft})
        assert f.n_frames == n_frames(f)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("privacy.target_epsilon=inf", "privacy.target_epsilon: Input should be a finite number"),
        ("privacy.target_epsilon=.nan", "privacy.target_epsilon: Input should be a finite number"),
        ("privacy.budget_epsilon=1e9", "privacy.budget_epsilon: Input should be less than or equal to 1000"),
        ("privacy.max_grad_norm=inf", "privacy.max_grad_norm: Input should be a finite number"),
        ("privacy.max_grad_norm=1e-300", "privacy.max_grad_norm: Input should be greater than or equal to 0.000001"),
        ("privacy.clients={c: {max_grad_norm: 1e-300}}", "privacy.clients.c.max_grad_norm: Input should be greater"),
        ("privacy.delta=1e-300", "privacy.delta: Input should be greater than or equal to 0.000000000001"),
        ("federation.round_timeout_s=.inf", "federation.round_timeout_s: Input should be a finite number"),
    ],
)
def test_privacy_and_float_settings_are_finite_and_in_range(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match="^<defaults> \\(with --set overrides\\): " + expected.replace(".", r"\.")):
        load_config(None, [override])


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("seed=" + "[" * 100 + "]" * 100, "nesting deeper than"),
        ("seed=" + billion_laughs("x").replace("\n", ", ").join("{}"), "aliases"),
        (".".join(["a"] * 100) + "=1", "more than 64 parts"),
        ("a..b=1", "expected KEY.PATH=VALUE"),
    ],
)
def test_set_values_go_through_the_same_guard(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(None, [override])
    assert str(info.value).startswith("--set ") and len(str(info.value)) < MAX_MESSAGE


def test_resolved_yaml_round_trips() -> None:
    cfg = load_config(None, ["privacy.clients={a: {delta: 1e-6}}", "sweep.epsilons=[1, inf]"])
    assert config_from_text(cfg.to_yaml(), source="server instruction") == cfg
    assert config_from_text("", source="empty") == Config()
    assert "expected a mapping of sections" in error_of("[1, 2]\n")

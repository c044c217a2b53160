"""The YAML schema: defaults, overrides, and one clear error per bad input."""

from pathlib import Path

import pytest

from fedsered.cli import main
from fedsered.config import Config, load_config
from fedsered.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_default_config_validates_and_matches_schema_defaults() -> None:
    cfg = load_config(ROOT / "configs" / "default.yaml")
    assert cfg.data.corpus == "embedded"
    assert cfg.features.n_mels == 64
    assert cfg.federation.num_clients == 8
    # keys the file leaves out take the schema's defaults; the simulated clients' policy consents to the baselines
    assert cfg.privacy.model_copy(update={"share": ("synthetic",)}) == Config().privacy
    assert set(cfg.privacy.share) == {"synthetic", "random_subset", "raw_sharing", "fedavg", "dp_fedavg"}


def test_overrides_are_parsed_as_yaml() -> None:
    cfg = load_config(None, ["distill.methods=[dm, mtt]", "distill.ipc=[1, 10]", "train.lr=0.01", "data.path=~x"])
    assert cfg.distill.methods == ("dm", "mtt")
    assert cfg.distill.ipc == (1, 10)
    assert cfg.train.lr == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("data:\n  corpsu: embedded\n", "data.corpsu: unknown key; allowed here: corpus"),
        ("train:\n  epochs: many\n", "train.epochs: Input should be a valid integer"),
        ("features:\n  n_mels: 2\n", "features.n_mels: Input should be greater than or equal to 8 (got 2)"),
        ("features:\n  hop_length: 2048\n", "features: hop_length must not exceed n_fft"),
        ("data:\n  corpus: ravdess\n", "corpus=ravdess needs data.path"),
        ("- a\n- b\n", "expected a mapping of sections"),
        ("data: [\n", "invalid YAML at line"),
        ("bogus: 1\n", "bogus: unknown key; allowed here: seed, data"),
    ],
)
def test_bad_configs_raise_one_error_naming_file_and_key(tmp_path: Path, yaml_text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith(str(path))
    assert expected in msg
    assert "\n" not in msg


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match=r"expected KEY\.PATH=VALUE"):
        load_config(None, ["train.lr"])
    with pytest.raises(ConfigError, match=r"train\.lr is not a section"):
        load_config(None, ["train.lr=1", "train.lr.x=2"])


def test_cli_prints_one_line_and_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  nmae: cnn6\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.nmae: unknown key" in err[0] and "Traceback" not in err[0]


def test_cli_validate_writes_resolved_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(ROOT / "configs" / "default.yaml"), "--set", "seed=7", "--out", str(tmp_path)]) == 0
    assert "seed: 7" in capsys.readouterr().out
    assert load_config(tmp_path / "config.yaml").seed == 7

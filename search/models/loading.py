"""Exported models on disk: ``model.safetensors`` + ``config.json`` ↔ a model that predicts κ(n).

An export directory holds the weights (safetensors: loading them runs no code) and a JSON config
with everything needed to rebuild the model and encode its inputs. Loading one needs only
``core``, torch, json, safetensors and the stdlib-only ``search.errors`` and ``search.locations``
(staged with every MLflow model): neither Optuna, nor MLflow, nor the study database.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.encoding import BOS, EOS, NUM_SPECIAL, PAD, MultiBaseEncoder
from core.model import CollatzTransformer, ModelConfig
from search.errors import EXIT_FAILURE, CollatzHpoError, one_line

if TYPE_CHECKING:
    from search.stats import Interval

__all__ = [
    "CONFIG_FILE",
    "EXPORT_FORMAT",
    "WEIGHTS_FILE",
    "ExportError",
    "ExportedModel",
    "InputError",
    "encoding_config",
    "export_files",
    "load_export",
    "held_out",
    "parse_value",
    "range_text",
    "save_weights",
    "short_number",
]

EXPORT_FORMAT = "collatz-hpo-export"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_REQUIRED = ("format", "model", "encoding", "max_length")


class ExportError(CollatzHpoError, ValueError):
    """An export (or registered model) that is missing, truncated or not one of ours."""

    exit_code = EXIT_FAILURE


class InputError(CollatzHpoError, ValueError):
    """A value the model cannot take: not an integer, not odd and positive, or too long."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def encoding_config(base: int) -> dict[str, Any]:
    """How an export's tokens read (``config.json``'s ``encoding``), from the encoding's constants."""
    return {
        "base": base,
        "vocab_size": MultiBaseEncoder(base).vocab_size,
        "tokens": {"pad": PAD, "bos": BOS, "eos": EOS, "digit_offset": NUM_SPECIAL},
        "digit_order": "most significant first",
    }


def save_weights(model: torch.nn.Module, path: str | Path) -> str:
    """Write the model's weights as safetensors; returns their SHA-256 (kept in config.json)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"format": EXPORT_FORMAT})
    return _sha256(Path(path))


def short_number(x: int) -> str:
    """``2^20``, ``10^12`` or the digits: a range bound as people write it (no separators, so it
    can name a registered model)."""
    for base in (2, 10):
        power = round(math.log(x, base)) if x > 1 else 0
        if power >= 4 and base**power == x:
            return f"{base}^{power}"
    return str(x)


def range_text(data_range: Sequence[int]) -> str:
    """``odd n < 2^20``, or ``odd n in [3, 2^20)``: the inputs a model was trained and tested on."""
    lo, hi = (int(x) for x in data_range)
    if lo <= 1:
        return f"odd n < {short_number(hi)}"
    return f"odd n in [{short_number(lo)}, {short_number(hi)})"


def held_out(config: dict[str, Any]) -> Interval | None:
    """An export's held-out exact match with its 95 % interval (config.json's ``test_metrics``),
    or None where its config does not say."""
    test = config.get("test_metrics") or {}
    rate = test.get("exact_match")
    n = test.get("num_samples") or (config.get("data") or {}).get("test_size")
    if not isinstance(rate, int | float) or not isinstance(n, int | float) or n < 1:
        return None
    from search.stats import wilson  # stdlib only; staged with every MLflow model

    return wilson(float(rate), int(n))


def parse_value(value: Any) -> int:
    """One input as an int: ints, numpy ints and decimal strings ("27", " 1_001 "); no bools or floats.

    Raises InputError naming the value when it is not an odd positive integer.
    """
    if isinstance(value, bool | np.bool_):
        raise InputError(f"{value!r} is not an integer")
    if isinstance(value, int | np.integer):
        n = int(value)
    elif isinstance(value, float | np.floating):
        if not math.isfinite(value) or value != int(value):
            raise InputError(f"{value!r} is not an integer")
        raise InputError(f"{value!r} is a float; pass integers (a float cannot hold large n exactly)")
    elif isinstance(value, str | bytes):
        text = value.decode() if isinstance(value, bytes) else value
        t = text.strip().replace("_", "")
        digits = t[1:] if t[:1] in "+-" else t
        if not digits.isascii() or not digits.isdigit():
            raise InputError(f"{text!r} is not an integer")
        try:
            n = int(t)
        except ValueError:  # past Python's int-from-text limit (4300 digits): no model takes it
            raise InputError(f"{t[:12]}... ({len(digits)} digits) is too long for any model") from None
    else:
        raise InputError(f"{value!r} is not an integer ({type(value).__name__})")
    if n == 0:
        raise InputError("0 is not an odd positive integer: κ is defined for odd n >= 1")
    if n < 0:
        raise InputError(f"{n} is negative: κ is defined for odd n >= 1")
    if n % 2 == 0:
        raise InputError(f"{n} is even: κ is defined for odd n >= 1")
    return n


@dataclass
class ExportedModel:
    """A loaded export: ``predict([27, 97]) -> [31, 73]`` (None where the output is not a number)."""

    model: CollatzTransformer
    config: dict[str, Any]
    source: str

    @property
    def base(self) -> int:
        return int(self.config["encoding"]["base"])

    @property
    def max_length(self) -> int:
        return int(self.config["max_length"])

    @property
    def encoder(self) -> MultiBaseEncoder:
        return MultiBaseEncoder(self.base)

    @property
    def training_range(self) -> tuple[int, int] | None:
        """[lo, hi): the odd inputs the model was trained (and tested) on; None: not recorded."""
        data_range = (self.config.get("data") or {}).get("range")
        return (int(data_range[0]), int(data_range[1])) if data_range else None

    def in_training_range(self, n: int) -> bool:
        """Whether ``n`` lies in the range the model learned (True when the export does not say)."""
        r = self.training_range
        return r is None or r[0] <= n < r[1]

    @property
    def largest_input(self) -> int:
        """The largest n whose digits + EOS fit the model's max length."""
        return self.base ** (self.max_length - 1) - 1

    def check(self, values: Iterable[Any]) -> list[int]:
        """Parse and validate every input (the first bad one raises InputError naming it)."""
        out = []
        encoder = self.encoder
        for value in values:
            n = parse_value(value)
            need = encoder.sequence_length(n)
            if need > self.max_length:
                raise InputError(
                    f"{n} is too long for the model: {need} tokens in base {self.base} (digits + EOS) "
                    f"but its max length is {self.max_length} (largest input {self.largest_input})"
                )
            out.append(n)
        return out

    def compare(self, values: Iterable[Any]) -> list[dict[str, Any]]:
        """Predict and check against the true κ: ``{"n", "predicted", "kappa", "correct",
        "in_training_range"}`` per input (an input outside the training range is answered too:
        the flag says the model never saw its like)."""
        from core.collatz import long_step

        ints = self.check(values)
        rows = []
        for n, p in zip(ints, self.predict(ints), strict=True):
            kappa = long_step(n)
            row = {"n": n, "predicted": p, "kappa": kappa, "correct": p == kappa}
            rows.append({**row, "in_training_range": self.in_training_range(n)})
        return rows

    def compare_each(self, values: Sequence[Any]) -> list[dict[str, Any]]:
        """``compare`` of every input the model can take, in one batch; an input it cannot take
        gets ``{"n": value, "predicted": None, "kappa": None, "correct": False, "error": why}``
        in its place instead of stopping the others."""
        taken: list[Any] = []
        errors: list[str | None] = []
        for value in values:
            try:
                self.check([value])
                taken.append(value)
                errors.append(None)
            except InputError as exc:
                errors.append(str(exc))
        compared = iter(self.compare(taken))
        return [
            next(compared)
            if why is None
            else {"n": value, "predicted": None, "kappa": None, "correct": False, "error": why}
            for value, why in zip(values, errors, strict=True)
        ]

    @torch.no_grad()
    def predict(self, values: Sequence[Any], batch_size: int | None = None) -> list[int | None]:
        """Greedy κ predictions, batched as the study's test evaluation was (same numbers out)."""
        ints = self.check(values)
        if not ints:
            return []
        batch_size = batch_size or int(self.config.get("eval_batch_size", 1024))
        encoder = self.encoder
        self.model.eval()
        out: list[int | None] = []
        for start in range(0, len(ints), batch_size):
            chunk = ints[start : start + batch_size]
            src = encoder.encode_batch(np.array(chunk, dtype=object)).long()  # width: longest input
            tokens = self.model.generate(src, max_new_tokens=self.max_length)
            out.extend(encoder.decode_batch(tokens))
        return out


def export_files(directory: str | Path) -> tuple[Path, Path]:
    """(weights, config) of an export directory, or of an MLflow model made by ``collatz-hpo export``."""
    d = Path(directory)
    if not d.exists():
        raise ExportError(f"no export at {d}")
    if not d.is_dir():
        raise ExportError(f"{d} is not an export directory")
    if (d / CONFIG_FILE).is_file() or (d / WEIGHTS_FILE).is_file() or not (d / "MLmodel").is_file():
        return d / WEIGHTS_FILE, d / CONFIG_FILE
    return d / "artifacts" / WEIGHTS_FILE, d / "artifacts" / CONFIG_FILE  # an MLflow pyfunc model


def read_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path} is missing: not a complete export")
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path} is not valid JSON ({exc}): the export is corrupted") from None
    if not isinstance(config, dict) or config.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{path} is not a collatz-hpo export config")
    missing = [k for k in _REQUIRED if k not in config]
    if missing:
        raise ExportError(f"{path} lacks {', '.join(missing)}: the export is corrupted")
    return config


def load_files(weights: str | Path, config_path: str | Path, device: str = "cpu") -> ExportedModel:
    """Rebuild the model from a weights file and its config; clear errors for anything unusable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = Path(weights)
    config = read_config(config_path)
    if not weights.is_file():
        raise ExportError(f"{weights} is missing: not a complete export")
    expected = config.get("weights_sha256")
    if expected and _sha256(weights) != expected:
        raise ExportError(f"{weights} does not match the checksum in {Path(config_path).name}: corrupted")
    try:
        state = load_file(str(weights), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ExportError(f"cannot read weights {weights}: {one_line(exc)}") from None
    try:
        model_config = ModelConfig(**config["model"])
        base = int(config["encoding"]["base"])
        vocab_size = MultiBaseEncoder(base).vocab_size
        if model_config.vocab_size != vocab_size:
            raise ValueError(f"vocab_size {model_config.vocab_size} is not {vocab_size} (base {base})")
        if int(config["max_length"]) != model_config.max_seq_length:
            raise ValueError("max_length differs from the model's max_seq_length")
        model = CollatzTransformer.from_config(model_config)
        model.load_state_dict(state)
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        raise ExportError(f"{config_path} and {weights.name} do not make a model: {one_line(exc)}") from None
    model.to(device).eval()
    return ExportedModel(model, config, str(weights.parent))


def load_export(directory: str | Path, device: str = "cpu") -> ExportedModel:
    """Load an export directory (or the MLflow model inside one) for prediction."""
    weights, config = export_files(directory)
    return load_files(weights, config, device)

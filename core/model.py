"""Encoder–decoder transformer for the long Collatz step.

The encoder reads the digits of n, the decoder writes the digits of κ(n) behind BOS: teacher
forcing in training, greedy autoregressive decoding until EOS in inference.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.checkpoint import load_checkpoint
from core.encoding import BOS, EOS, NUM_SPECIAL, PAD

__all__ = ["CollatzTransformer", "ModelConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the model; stored in every checkpoint."""

    vocab_size: int
    d_model: int = 512
    nhead: int = 8
    num_layers: int = 6
    num_decoder_layers: int = 1
    dim_feedforward: int | None = None
    dropout: float = 0.1
    max_seq_length: int = 64

    def __post_init__(self) -> None:
        ints = (
            "vocab_size",
            "d_model",
            "nhead",
            "num_layers",
            "num_decoder_layers",
            "max_seq_length",
        )
        for name in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
        if self.vocab_size < NUM_SPECIAL + 2:
            raise ValueError(
                f"vocab_size={self.vocab_size} is too small: it is base + 3 (PAD, BOS, EOS); "
                "pass vocab_size=dataset.vocab_size"
            )
        for name in ("d_model", "nhead", "num_layers", "num_decoder_layers", "max_seq_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.nhead:
            valid = [h for h in range(1, min(self.d_model, 64) + 1) if self.d_model % h == 0]
            raise ValueError(
                f"nhead={self.nhead} does not divide d_model={self.d_model}; choose nhead from {valid}"
            )
        if self.dim_feedforward is not None and self.dim_feedforward < 1:
            raise ValueError(f"dim_feedforward must be >= 1, got {self.dim_feedforward}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def ff_dim(self) -> int:
        return self.dim_feedforward or 4 * self.d_model

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class CollatzTransformer(nn.Module):
    """Encoder–decoder transformer over digit tokens (pre-LN, learned positions).

    ``model(src, tgt_in)`` gives teacher-forced logits; ``model(src)`` gives the logits of
    greedy decoding, aligned with the dataset's targets; ``generate(src)`` the token ids.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 512,
        nhead: int = 8,
        num_layers: int = 6,
        num_decoder_layers: int = 1,
        dim_feedforward: int | None = None,
        dropout: float = 0.1,
        max_seq_length: int = 64,
    ) -> None:
        super().__init__()
        self.config = ModelConfig(
            vocab_size=vocab_size,
            d_model=d_model,
            nhead=nhead,
            num_layers=num_layers,
            num_decoder_layers=num_decoder_layers,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            max_seq_length=max_seq_length,
        )
        cfg = self.config
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=PAD)
        self.src_position = nn.Embedding(cfg.max_seq_length, cfg.d_model)
        self.tgt_position = nn.Embedding(cfg.max_seq_length, cfg.d_model)

        def enc_layer() -> nn.TransformerEncoderLayer:
            return nn.TransformerEncoderLayer(
                cfg.d_model, cfg.nhead, cfg.ff_dim, cfg.dropout, batch_first=True, norm_first=True
            )

        dec_layer = nn.TransformerDecoderLayer(
            cfg.d_model, cfg.nhead, cfg.ff_dim, cfg.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            enc_layer(), cfg.num_layers, norm=nn.LayerNorm(cfg.d_model), enable_nested_tensor=False
        )
        self.decoder = nn.TransformerDecoder(
            dec_layer, cfg.num_decoder_layers, norm=nn.LayerNorm(cfg.d_model)
        )
        self.output_head = nn.Linear(cfg.d_model, cfg.vocab_size)
        self._checked_on_device = False

    # --- construction -----------------------------------------------------------------
    @classmethod
    def from_config(cls, config: ModelConfig | dict[str, Any]) -> CollatzTransformer:
        if isinstance(config, dict):
            config = ModelConfig(**config)
        return cls(**config.to_dict())

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, map_location: str | torch.device = "cpu"
    ) -> CollatzTransformer:
        """Rebuild a model from a checkpoint alone (config + weights, no code executed)."""
        ckpt = load_checkpoint(path, map_location)
        model = cls.from_config(ckpt["model_config"])
        model.load_state_dict(ckpt["model_state"])
        return model.to(map_location)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- checks ------------------------------------------------------------------------
    def _check_tokens(self, tokens: torch.Tensor, what: str) -> None:
        if tokens.dim() != 2:
            raise ValueError(f"{what} must be [batch, length] token ids, got shape {tuple(tokens.shape)}")
        if tokens.shape[1] > self.config.max_seq_length:
            raise ValueError(
                f"{what} has length {tokens.shape[1]} > max_seq_length={self.config.max_seq_length}; "
                "build the model with a larger max_seq_length"
            )
        # A device sync per call on GPU: check there once, always on CPU (free).
        if tokens.device.type != "cpu" and self._checked_on_device:
            return
        top = int(tokens.max()) if tokens.numel() else 0
        if top >= self.config.vocab_size:
            raise ValueError(
                f"{what} holds token id {top} but the model's vocab_size is "
                f"{self.config.vocab_size}; build it with vocab_size=dataset.vocab_size "
                f"(base + 3, here at least {top + 1})"
            )
        if tokens.device.type != "cpu":
            self._checked_on_device = True

    # --- forward -----------------------------------------------------------------------
    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder memory and its padding mask."""
        self._check_tokens(src, "src")
        pos = torch.arange(src.shape[1], device=src.device)
        x = self.token_embedding(src) + self.src_position(pos)
        pad_mask = src == PAD
        return self.encoder(x, src_key_padding_mask=pad_mask), pad_mask

    def decode(
        self, tgt_in: torch.Tensor, memory: torch.Tensor, memory_pad_mask: torch.Tensor
    ) -> torch.Tensor:
        """Logits for every position of a BOS-led decoder input (causal)."""
        self._check_tokens(tgt_in, "tgt_in")
        length = tgt_in.shape[1]
        pos = torch.arange(length, device=tgt_in.device)
        y = self.token_embedding(tgt_in) + self.tgt_position(pos)
        causal = torch.ones(length, length, dtype=torch.bool, device=tgt_in.device).triu(1)
        y = self.decoder(
            y,
            memory,
            tgt_mask=causal,
            tgt_is_causal=True,
            tgt_key_padding_mask=(tgt_in == PAD),
            memory_key_padding_mask=memory_pad_mask,
        )
        return self.output_head(y)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced logits [B, T, V] given ``tgt_in``, else greedy-decoding logits.

        Greedy logits always span ``max_seq_length`` positions (PAD after decoding stopped), so
        the outputs of batches that stop at different steps concatenate, as in the guide.
        """
        if tgt_in is None:
            logits = self._greedy(src)[1]
            missing = self.config.max_seq_length - logits.shape[1]
            pad = torch.full_like(logits[:, :1], float("-inf")).expand(-1, missing, -1).clone()
            pad[..., PAD] = 0.0
            return torch.cat([logits, pad], dim=1)
        memory, mask = self.encode(src)
        return self.decode(tgt_in, memory, mask)

    @staticmethod
    def shift_right(targets: torch.Tensor) -> torch.Tensor:
        """Decoder input for teacher forcing: BOS followed by the targets minus their last token."""
        bos = torch.full_like(targets[:, :1], BOS)
        return torch.cat([bos, targets[:, :-1]], dim=1)

    @torch.no_grad()
    def _greedy(
        self, src: torch.Tensor, max_new_tokens: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        steps = max_new_tokens or self.config.max_seq_length
        if steps > self.config.max_seq_length:
            raise ValueError(f"max_new_tokens={steps} > max_seq_length={self.config.max_seq_length}")
        memory, mask = self.encode(src)
        batch = src.shape[0]
        tgt = torch.full((batch, 1), BOS, dtype=torch.long, device=src.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
        all_logits = []
        for _ in range(steps):
            logits = self.decode(tgt, memory, mask)[:, -1]
            # Rows that already emitted EOS produce PAD, so outputs align with padded targets.
            pad_logits = torch.full_like(logits, float("-inf"))
            pad_logits[:, PAD] = 0.0
            logits = torch.where(finished[:, None], pad_logits, logits)
            nxt = logits.argmax(-1)
            all_logits.append(logits)
            tgt = torch.cat([tgt, nxt[:, None]], dim=1)
            finished |= nxt == EOS
            if bool(finished.all()):
                break
        return tgt[:, 1:], torch.stack(all_logits, dim=1)

    @torch.no_grad()
    def generate(self, src: torch.Tensor, max_new_tokens: int | None = None) -> torch.Tensor:
        """Greedy decoding until every row emitted EOS: token ids [B, T], PAD after EOS."""
        was_training = self.training
        self.eval()
        try:
            return self._greedy(src, max_new_tokens)[0]
        finally:
            self.train(was_training)

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
        d_model: int = ModelConfig.d_model,
        nhead: int = ModelConfig.nhead,
        num_layers: int = ModelConfig.num_layers,
        num_decoder_layers: int = ModelConfig.num_decoder_layers,
        dim_feedforward: int | None = ModelConfig.dim_feedforward,
        dropout: float = ModelConfig.dropout,
        max_seq_length: int = ModelConfig.max_seq_length,
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
    def check_tokens(self, tokens: torch.Tensor, what: str = "tokens") -> None:
        """Raise a clear ValueError for a batch the model cannot embed (shape, length, token ids).

        On a GPU tensor this syncs the device; the trainer calls it on CPU batches before
        moving them, so an out-of-range id never reaches CUDA as a device-side assert.
        """
        self._check_shape(tokens, what)
        self._check_ids(tokens, what)

    def _check_shape(self, tokens: torch.Tensor, what: str) -> None:
        if tokens.dim() != 2:
            raise ValueError(f"{what} must be [batch, length] token ids, got shape {tuple(tokens.shape)}")
        if tokens.shape[1] > self.config.max_seq_length:
            raise ValueError(
                f"{what} has length {tokens.shape[1]} > max_seq_length={self.config.max_seq_length}; "
                "build the model with a larger max_seq_length"
            )

    def _check_ids(self, tokens: torch.Tensor, what: str) -> None:
        top = int(tokens.max()) if tokens.numel() else 0
        if top >= self.config.vocab_size:
            raise ValueError(
                f"{what} holds token id {top} but the model's vocab_size is "
                f"{self.config.vocab_size}; build it with vocab_size=dataset.vocab_size "
                f"(base + 3, here at least {top + 1})"
            )

    def _check_tokens(self, tokens: torch.Tensor, what: str) -> None:
        """Shape always; token ids on every CPU call but on GPU only the first (each is a sync)."""
        self._check_shape(tokens, what)
        if tokens.device.type == "cpu" or not self._checked_on_device:
            self._check_ids(tokens, what)
            self._checked_on_device |= tokens.device.type != "cpu"

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
        self,
        src: torch.Tensor,
        max_new_tokens: int | None = None,
        memory: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy decoding with a per-layer cache of the self-attention inputs.

        Each step runs the decoder on the newest position only (causal attention leaves the
        earlier positions unchanged): O(T) positions instead of O(T²) without the cache.
        """
        steps = max_new_tokens or self.config.max_seq_length
        if steps > self.config.max_seq_length:
            raise ValueError(f"max_new_tokens={steps} > max_seq_length={self.config.max_seq_length}")
        memory, memory_mask = self.encode(src) if memory is None else memory
        batch, device = src.shape[0], src.device
        memory_bias = _key_bias(memory_mask, self.config.nhead, memory.dtype)
        state = _DecodeCache(memory, memory_bias, [None] * len(self.decoder.layers))
        token = torch.full((batch,), BOS, dtype=torch.long, device=device)
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        pad_logits = torch.full((batch, self.config.vocab_size), float("-inf"), device=device)
        pad_logits[:, PAD] = 0.0
        tokens, all_logits = [], []
        for step in range(steps):
            logits = self._decode_step(token, step, state).float()
            # Rows that already emitted EOS produce PAD, so outputs align with padded targets.
            logits = torch.where(finished[:, None], pad_logits, logits)
            token = logits.argmax(-1)
            tokens.append(token)
            all_logits.append(logits)
            finished |= token == EOS
            if bool(finished.all()):
                break
        return torch.stack(tokens, dim=1), torch.stack(all_logits, dim=1)

    def _decode_step(self, token: torch.Tensor, step: int, state: _DecodeCache) -> torch.Tensor:
        """Logits [B, V] after decoder input ``token`` [B] at position ``step``; grows the cache."""
        # A PAD among the decoder's own inputs is masked as a key, as in teacher forcing.
        pad = _key_bias((token == PAD)[:, None], self.config.nhead, state.memory.dtype)
        state.key_bias = pad if state.key_bias is None else torch.cat([state.key_bias, pad], dim=2)
        y = self.token_embedding(token)[:, None] + self.tgt_position.weight[step]
        for i, layer in enumerate(self.decoder.layers):
            y, state.layers[i] = _decoder_layer_step(
                layer, y, state.layers[i], state.key_bias, state.memory, state.memory_bias
            )
        return self.output_head(self.decoder.norm(y))[:, 0]

    @torch.no_grad()
    def generate(
        self,
        src: torch.Tensor,
        max_new_tokens: int | None = None,
        memory: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Greedy decoding until every row emitted EOS: token ids [B, T], PAD after EOS.

        ``memory`` is ``encode(src)`` when the caller already has it (evaluation does).
        """
        was_training = self.training
        self.eval()
        try:
            return self._greedy(src, max_new_tokens, memory)[0]
        finally:
            self.train(was_training)


@dataclass
class _DecodeCache:
    """What greedy decoding keeps between steps: encoder memory, per-layer key/value inputs and
    the additive key masks (``_key_bias``) of the memory and of the decoder's own inputs."""

    memory: torch.Tensor
    memory_bias: torch.Tensor
    layers: list[torch.Tensor | None]
    key_bias: torch.Tensor | None = None


def _key_bias(key_pad: torch.Tensor, heads: int, dtype: torch.dtype) -> torch.Tensor:
    """Key padding mask [B, S] (True = masked) as the additive attention mask [B·heads, 1, S].

    It is exactly what ``F.multi_head_attention_forward`` makes of a ``key_padding_mask``; passed
    as ``attn_mask`` it skips torch's ``_check_with`` shape checks, whose first call imports sympy
    (~0.4 s of every ``predict``).
    """
    bias = torch.zeros(key_pad.shape, dtype=dtype, device=key_pad.device).masked_fill(key_pad, float("-inf"))
    return bias.repeat_interleave(heads, dim=0)[:, None, :]


def _decoder_layer_step(
    layer: nn.TransformerDecoderLayer,
    y: torch.Tensor,
    cache: torch.Tensor | None,
    key_bias: torch.Tensor,
    memory: torch.Tensor,
    memory_bias: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pre-LN decoder layer for the newest position y [B, 1, D], as layer.forward computes it.

    ``cache`` holds norm1 of the earlier positions (the self-attention keys and values);
    returns the layer output and the cache grown by this position.
    """
    h = layer.norm1(y)
    keys = h if cache is None else torch.cat([cache, h], dim=1)
    y = y + layer.dropout1(layer.self_attn(h, keys, keys, attn_mask=key_bias, need_weights=False)[0])
    h = layer.norm2(y)
    cross = layer.multihead_attn(h, memory, memory, attn_mask=memory_bias, need_weights=False)[0]
    y = y + layer.dropout2(cross)
    h = layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm3(y)))))
    return y + layer.dropout3(h), keys

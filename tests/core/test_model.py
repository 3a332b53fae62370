"""The encoder–decoder transformer: shapes, greedy decoding, config checks, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, random_split

from core import (
    BOS,
    EOS,
    PAD,
    BatchIterator,
    CheckpointError,
    CollatzDataset,
    CollatzTransformer,
    ModelConfig,
    Trainer,
    load_checkpoint,
    save_checkpoint,
)


def tiny(vocab_size: int, **kw: object) -> CollatzTransformer:
    torch.manual_seed(0)
    args: dict[str, object] = dict(
        d_model=32, nhead=4, num_layers=1, num_decoder_layers=1, dropout=0.0, max_seq_length=16
    )
    args.update(kw)
    return CollatzTransformer(vocab_size, **args)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def data() -> CollatzDataset:
    return CollatzDataset((1, 10**6), 64, base=10, seed=0)


def batch(data: CollatzDataset, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(BatchIterator(data, size, shuffle=False)))


def test_teacher_forced_shapes(data: CollatzDataset) -> None:
    model = tiny(data.vocab_size)
    src, tgt = batch(data)
    tgt_in = CollatzTransformer.shift_right(tgt)
    assert tgt_in[:, 0].tolist() == [BOS] * 8
    assert torch.equal(tgt_in[:, 1:], tgt[:, :-1])
    logits = model(src, tgt_in)
    assert logits.shape == (8, tgt.shape[1], data.vocab_size)
    assert logits.dtype == torch.float32


def test_decoder_is_causal(data: CollatzDataset) -> None:
    model = tiny(data.vocab_size).eval()
    src, tgt = batch(data)
    tgt_in = CollatzTransformer.shift_right(tgt)
    changed = tgt_in.clone()
    changed[:, 3:] = 5  # later tokens must not change earlier logits
    a, b = model(src, tgt_in), model(src, changed)
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_greedy_logits_argmax_equals_generate(data: CollatzDataset) -> None:
    model = tiny(data.vocab_size).eval()
    src, _ = batch(data)
    logits = model(src)
    assert logits.shape == (8, model.config.max_seq_length, data.vocab_size)
    generated = model.generate(src)
    pred = logits.argmax(-1)
    width = generated.shape[1]
    assert torch.equal(pred[:, :width], generated)
    assert bool((pred[:, width:] == PAD).all())


def uncached_greedy(model: CollatzTransformer, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy decoding by its definition: the whole decoder over the growing prefix each step."""
    memory, mask = model.encode(src)
    tgt = torch.full((src.shape[0], 1), BOS, dtype=torch.long)
    finished = torch.zeros(src.shape[0], dtype=torch.bool)
    steps = []
    for _ in range(model.config.max_seq_length):
        logits = model.decode(tgt, memory, mask)[:, -1]
        logits[finished] = float("-inf")
        logits[finished, PAD] = 0.0
        steps.append(logits)
        nxt = logits.argmax(-1)
        tgt = torch.cat([tgt, nxt[:, None]], dim=1)
        finished |= nxt == EOS
        if bool(finished.all()):
            break
    return tgt[:, 1:], torch.stack(steps, dim=1)


@pytest.mark.parametrize(
    ("seed", "layers", "pad_bias"),
    [(0, 1, 0.0), (1, 2, 0.0), (2, 3, 0.0), (3, 2, 1.5), (4, 1, 3.0)],
)
@torch.no_grad()
def test_cached_greedy_equals_full_prefix_decoding(
    data: CollatzDataset, seed: int, layers: int, pad_bias: float
) -> None:
    # The key/value cache must not change a single decision or logit. A bias towards PAD makes
    # rows emit PAD before EOS, which the decoder then masks as a key in both versions.
    torch.manual_seed(seed)
    model = CollatzTransformer(
        data.vocab_size,
        d_model=32,
        nhead=4,
        num_layers=1,
        num_decoder_layers=layers,
        dropout=0.3,
        max_seq_length=16,
    ).eval()
    model.output_head.bias[PAD] += pad_bias
    src = batch(data, 16)[0].clone()
    src[::3, -3:] = PAD  # shorter inputs in some rows: the memory padding mask matters too
    expected_tokens, expected_logits = uncached_greedy(model, src)
    tokens, logits = model._greedy(src)
    assert torch.equal(tokens, expected_tokens)
    torch.testing.assert_close(logits, expected_logits, rtol=1e-5, atol=1e-5)
    if pad_bias:
        assert bool((expected_tokens[~(expected_tokens == EOS).cumsum(1).bool()] == PAD).any())


def test_generate_restores_training_mode(data: CollatzDataset) -> None:
    model = tiny(data.vocab_size, dropout=0.5).train()
    src, _ = batch(data)
    a, b = model.generate(src), model.generate(src)
    assert model.training
    assert torch.equal(a, b)  # dropout is off while generating


def fake_decoder(model: CollatzTransformer, stops: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Row i emits the digit token 4 for ``stops[i]`` steps, then EOS, then (if asked) digit 5."""
    vocab = model.config.vocab_size

    def decode_step(token: torch.Tensor, step: int, state: object) -> torch.Tensor:
        logits = torch.zeros(token.shape[0], vocab)  # step = tokens generated so far
        for i, stop in enumerate(stops):
            logits[i, 4 if step < stop else EOS if step == stop else 5] = 1.0
        return logits

    monkeypatch.setattr(model, "_decode_step", decode_step)


def test_generate_stops_at_eos_and_pads_after(data: CollatzDataset, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny(data.vocab_size)
    fake_decoder(model, [0, 2, 5, 1], monkeypatch)
    src, _ = batch(data, 4)
    out = model.generate(src)
    assert out.tolist() == [
        [EOS, PAD, PAD, PAD, PAD, PAD],
        [4, 4, EOS, PAD, PAD, PAD],
        [4, 4, 4, 4, 4, EOS],
        [4, EOS, PAD, PAD, PAD, PAD],
    ]
    assert data.encoder.decode_batch(out) == [None, 11, 11111, 1]
    logits = model(src)
    assert logits.shape[1] == model.config.max_seq_length
    assert torch.equal(logits.argmax(-1)[:, :6], out)
    assert bool((logits.argmax(-1)[:, 6:] == PAD).all())


def test_generate_respects_max_new_tokens(data: CollatzDataset, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny(data.vocab_size)
    fake_decoder(model, [100, 100], monkeypatch)  # never emits EOS
    src, _ = batch(data, 2)
    assert model.generate(src, max_new_tokens=3).tolist() == [[4, 4, 4], [4, 4, 4]]
    assert model.generate(src).shape == (2, model.config.max_seq_length)
    with pytest.raises(ValueError, match="max_seq_length"):
        model.generate(src, max_new_tokens=17)


def test_greedy_logits_of_batches_concatenate(data: CollatzDataset, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guide's evaluation loop cats model(inputs) over batches that stop at different steps."""
    model = tiny(data.vocab_size)
    src, _ = batch(data, 2)
    fake_decoder(model, [1, 1], monkeypatch)
    early = model(src)
    fake_decoder(model, [6, 6], monkeypatch)
    late = model(src)
    preds = torch.cat([early.argmax(-1), late.argmax(-1)], dim=0)
    assert data.encoder.decode_batch(preds) == [1, 1, 111111, 111111]


def test_nhead_must_divide_d_model() -> None:
    with pytest.raises(ValueError) as info:
        CollatzTransformer(vocab_size=27, d_model=30, nhead=4)
    assert "nhead=4" in str(info.value) and "d_model=30" in str(info.value)
    with pytest.raises(ValueError, match="nhead=3"):
        ModelConfig(vocab_size=27, d_model=64, nhead=3)


@pytest.mark.parametrize(
    ("kw", "error"),
    [
        ({"vocab_size": 4}, ValueError),
        ({"d_model": 0}, ValueError),
        ({"num_layers": 0}, ValueError),
        ({"dropout": 1.0}, ValueError),
        ({"d_model": 32.0}, TypeError),
        ({"nhead": True}, TypeError),
    ],
)
def test_bad_configs(kw: dict[str, object], error: type[Exception]) -> None:
    args: dict[str, object] = {"vocab_size": 27, "d_model": 32, "nhead": 4}
    args.update(kw)
    with pytest.raises(error):
        ModelConfig(**args)  # type: ignore[arg-type]


def test_vocab_smaller_than_data_is_a_clear_error_at_first_forward() -> None:
    data = CollatzDataset((1, 10**6), 32, base=24, seed=0)
    model = tiny(vocab_size=13)  # built for base 10, fed base 24
    src, tgt = batch(data)
    with pytest.raises(ValueError) as info:
        model(src, CollatzTransformer.shift_right(tgt))
    assert "vocab_size=dataset.vocab_size" in str(info.value)
    assert "13" in str(info.value)
    with pytest.raises(ValueError, match="vocab_size=dataset.vocab_size"):
        model.generate(src)


def test_trainer_rejects_a_model_with_too_small_vocab(tmp_path: Path) -> None:
    data = CollatzDataset((1, 10**6), 40, base=24, seed=0)
    model = tiny(vocab_size=13)
    for loader in (
        BatchIterator(data, 8),
        DataLoader(data, batch_size=8),
        DataLoader(random_split(data, [30, 10])[0], batch_size=8),
    ):
        with pytest.raises(ValueError, match="vocab_size=dataset.vocab_size"):
            Trainer(model, loader, device="cpu", checkpoint_dir=tmp_path, log=None)
    ok = tiny(vocab_size=data.vocab_size)
    Trainer(ok, BatchIterator(data, 8), device="cpu", log=None)


def test_check_tokens_names_the_culprit(data: CollatzDataset) -> None:
    model = tiny(data.vocab_size)
    src, _ = batch(data)
    model.check_tokens(src)
    with pytest.raises(
        ValueError, match=rf"^labels holds token id {data.vocab_size} but the model's vocab_size"
    ):
        model.check_tokens(src.clone().fill_(data.vocab_size), "labels")
    with pytest.raises(ValueError, match=r"must be \[batch, length\]"):
        model.check_tokens(src[0])


def test_src_longer_than_max_seq_length_is_rejected(data: CollatzDataset) -> None:
    model = tiny(data.vocab_size, max_seq_length=4)
    src = torch.full((2, 6), 4)
    with pytest.raises(ValueError, match="max_seq_length"):
        model.encode(src)


def write_checkpoint(model: CollatzTransformer, path: Path) -> Path:
    return save_checkpoint(
        path, {"model_config": model.config.to_dict(), "model_state": model.state_dict(), "epoch": 1}
    )


def test_from_checkpoint_rebuilds_an_identical_model(
    data: CollatzDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny(data.vocab_size, d_model=48, nhead=6, num_layers=2, dim_feedforward=40).eval()
    path = write_checkpoint(model, tmp_path / "model.pt")

    calls: list[dict[str, object]] = []
    real_load = torch.load

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        return real_load(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "load", spy)
    torch.manual_seed(123)  # a different init: only the checkpoint may make them equal
    rebuilt = CollatzTransformer.from_checkpoint(path).eval()
    assert calls and all(c.get("weights_only") is True for c in calls)
    assert rebuilt.config == model.config
    src, tgt = batch(data)
    tgt_in = CollatzTransformer.shift_right(tgt)
    assert torch.equal(rebuilt(src, tgt_in), model(src, tgt_in))
    assert torch.equal(rebuilt.generate(src), model.generate(src))
    state, rebuilt_state = model.state_dict(), rebuilt.state_dict()
    assert state.keys() == rebuilt_state.keys()
    assert all(torch.equal(state[k], rebuilt_state[k]) for k in state)


class NotAllowed:
    """Unpickling this needs code execution: a weights-only load must refuse it."""

    def __init__(self) -> None:
        self.x = 1


def test_checkpoint_with_arbitrary_objects_is_refused(data: CollatzDataset, tmp_path: Path) -> None:
    model = tiny(data.vocab_size)
    path = tmp_path / "evil.pt"
    torch.save(
        {
            "model_config": model.config.to_dict(),
            "model_state": model.state_dict(),
            "epoch": 1,
            "x": NotAllowed(),
        },
        path,
    )
    with pytest.raises(CheckpointError):
        CollatzTransformer.from_checkpoint(path)


def test_missing_and_corrupt_checkpoints(data: CollatzDataset, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        CollatzTransformer.from_checkpoint(tmp_path / "nope.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError):
        CollatzTransformer.from_checkpoint(garbage)
    good = write_checkpoint(tiny(data.vocab_size), tmp_path / "good.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        CollatzTransformer.from_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a collatz-hpo checkpoint"):
        load_checkpoint(foreign)
    assert issubclass(CheckpointError, ValueError)


def test_save_checkpoint_is_atomic(
    data: CollatzDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny(data.vocab_size)
    path = write_checkpoint(model, tmp_path / "last.pt")
    before = path.read_bytes()

    def crash(obj: object, f: str, *args: object, **kwargs: object) -> None:
        Path(f).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        write_checkpoint(model, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1


def test_an_interrupt_during_a_checkpoint_write_stays_an_interrupt(tmp_path: Path) -> None:
    """Ctrl-C/SIGTERM mid-write: KeyboardInterrupt (not a disk error), the old file intact."""
    import signal

    path = save_checkpoint(tmp_path / "last.pt", {"model_config": {}, "model_state": {}, "epoch": 1})
    big = {"model_config": {}, "model_state": {"w": torch.ones(100_000_000)}, "epoch": 2}  # 400 MB

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)  # well inside a 400 MB write
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(path, big)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
def test_cuda_smoke(data: CollatzDataset, tmp_path: Path) -> None:
    device = torch.device("cuda")
    model = tiny(data.vocab_size).to(device)
    trainer = Trainer(
        model,
        BatchIterator(data, 16),
        BatchIterator(data, 32, shuffle=False),
        device=device,
        checkpoint_dir=tmp_path,
        log=None,
    )
    history = trainer.train(2, torch.optim.Adam(model.parameters(), lr=1e-3))
    assert len(history["train_loss"]) == 2
    src, _ = batch(data)
    out = model.generate(src.to(device))
    assert out.device.type == "cuda"
    cpu_model = CollatzTransformer.from_checkpoint(tmp_path / "last.pt")
    assert next(cpu_model.parameters()).device.type == "cpu"
    gpu_model = CollatzTransformer.from_checkpoint(tmp_path / "last.pt", map_location="cuda")
    assert torch.equal(gpu_model.generate(src.to(device)), out)
    too_small = tiny(vocab_size=5).to(device)
    with pytest.raises(ValueError, match="vocab_size=dataset.vocab_size"):
        too_small.generate(src.to(device))
    # A later batch with an id beyond the vocabulary: a clear error from the trainer's CPU-side
    # check, not a device-side assert after the model's first-call check.
    src2, tgt2 = batch(data, 4)
    bad = [(src2, tgt2), (src2, tgt2.clone().fill_(data.vocab_size))]
    trainer = Trainer(model, bad, None, device=device, checkpoint_dir=None, log=None)
    with pytest.raises(ValueError, match=f"targets holds token id {data.vocab_size}"):
        trainer.train(1, torch.optim.Adam(model.parameters(), lr=1e-3))

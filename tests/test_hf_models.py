"""HuggingFace architectures built locally from small configs with random weights (no download),
exported for tract with check_io, over dynamic axes where the model allows them: encoders, a
decoder without cache, speech and vision models, each with its own attention and mask code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as tf
from torch import nn

from torch_to_nnef import TractModel, TractNNEF, export_model_to_nnef

SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128}
SPEECH = {
    **SMALL,
    "conv_dim": (32, 32),
    "conv_stride": (5, 2),
    "conv_kernel": (10, 3),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
}
"""The speech models' convolutional front end over raw audio: two layers, an overall stride of 10 samples."""
LLM = {**SMALL, "vocab_size": 100, "num_key_value_heads": 2, "max_position_embeddings": 128}


class FirstOutput(nn.Module):
    """The model's hidden states (``last_hidden_state``), whatever its output class."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        out = self.model(*args)
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def ids(length: int) -> torch.Tensor:
    return torch.randint(3, 100, (1, length))


TOKENS = (lambda n: (ids(n),), ["input_ids"], {"input_ids": {1: "S"}})
"""Inputs, names and dynamic axes of the models that take token ids alone, over a dynamic length."""

Case = tuple[Callable[[], nn.Module], Callable[[int], tuple[torch.Tensor, ...]], list[str], dict[str, dict[int, str]]]

CASES: dict[str, Case] = {
    "bert": (
        lambda: tf.BertModel(tf.BertConfig(vocab_size=100, **SMALL)),
        lambda n: (ids(n), torch.ones(1, n, dtype=torch.long)),
        ["input_ids", "attention_mask"],
        {"input_ids": {1: "S"}, "attention_mask": {1: "S"}},
    ),
    "distilbert": (
        lambda: tf.DistilBertModel(tf.DistilBertConfig(vocab_size=100, dim=64, n_layers=2, n_heads=4, hidden_dim=128)),
        *TOKENS,
    ),
    "roberta": (
        lambda: tf.RobertaModel(tf.RobertaConfig(vocab_size=100, **SMALL)),
        *TOKENS,
    ),
    "t5-encoder": (  # relative position buckets: logs, integer min and where over positions
        lambda: tf.T5EncoderModel(
            tf.T5Config(vocab_size=100, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4)
        ),
        *TOKENS,
    ),
    "gpt2": (  # eager attention: the causal mask compares two aranges
        lambda: tf.GPT2Model(tf.GPT2Config(vocab_size=100, n_embd=64, n_layer=2, n_head=4, n_positions=64)),
        *TOKENS,
    ),
    "wav2vec2": (
        lambda: tf.Wav2Vec2Model(tf.Wav2Vec2Config(**SPEECH)),
        lambda n: (torch.randn(1, n * 160),),
        ["waveform"],
        {"waveform": {1: "T"}},
    ),
    "whisper-encoder": (
        lambda: (
            tf.WhisperModel(
                tf.WhisperConfig(
                    d_model=64,
                    encoder_layers=2,
                    decoder_layers=2,
                    encoder_attention_heads=4,
                    decoder_attention_heads=4,
                    encoder_ffn_dim=128,
                    decoder_ffn_dim=128,
                    num_mel_bins=16,
                    max_source_positions=50,
                    vocab_size=100,
                    pad_token_id=0,
                    bos_token_id=1,
                    eos_token_id=2,
                    decoder_start_token_id=1,
                )
            ).encoder
        ),
        lambda n: (torch.randn(1, 16, 100),),
        ["mel"],
        {},
    ),
    "vit": (
        lambda: tf.ViTModel(tf.ViTConfig(image_size=32, patch_size=8, **SMALL)),
        lambda n: (torch.randn(1, 3, 32, 32),),
        ["pixels"],
        {},
    ),
    "convnext": (
        lambda: tf.ConvNextModel(tf.ConvNextConfig(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1])),
        lambda n: (torch.randn(1, 3, 4 * n, 64),),
        ["pixels"],
        {"pixels": {2: "H"}},
    ),
    "swin": (
        lambda: tf.SwinModel(
            tf.SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4)
        ),
        lambda n: (torch.randn(1, 3, 64, 64),),
        ["pixels"],
        {},
    ),
    "convbert": (  # torch.multiply, a composite op torch keeps whole; separable convolutions over time
        lambda: tf.ConvBertModel(tf.ConvBertConfig(vocab_size=100, embedding_size=32, **SMALL)),
        *TOKENS,
    ),
    "deberta-v2": (  # disentangled attention: relative positions gathered from the scores
        lambda: tf.DebertaV2Model(tf.DebertaV2Config(vocab_size=100, **SMALL)),
        *TOKENS,
    ),
    "bart": (
        lambda: tf.BartModel(
            tf.BartConfig(
                vocab_size=100,
                d_model=64,
                encoder_layers=1,
                decoder_layers=1,
                encoder_attention_heads=4,
                decoder_attention_heads=4,
                encoder_ffn_dim=128,
                decoder_ffn_dim=128,
                max_position_embeddings=64,
            )
        ),
        *TOKENS,
    ),
    "llama": (  # rotary embeddings, grouped-query attention, RMS norm
        lambda: tf.LlamaModel(tf.LlamaConfig(**LLM)),
        *TOKENS,
    ),
    "gemma2": (  # soft-capped logits, sliding-window layers
        lambda: tf.Gemma2Model(tf.Gemma2Config(**LLM, head_dim=16)),
        *TOKENS,
    ),
    "hubert": (
        lambda: tf.HubertModel(tf.HubertConfig(**SPEECH)),
        lambda n: (torch.randn(1, n * 160),),
        ["waveform"],
        {"waveform": {1: "T"}},
    ),
    "beit": (  # relative position bias tables
        lambda: tf.BeitModel(tf.BeitConfig(image_size=32, patch_size=8, use_relative_position_bias=True, **SMALL)),
        lambda n: (torch.randn(1, 3, 32, 32),),
        ["pixels"],
        {},
    ),
    "segformer": (  # efficient attention over a reduced sequence, over both spatial axes
        lambda: tf.SegformerModel(
            tf.SegformerConfig(
                num_encoder_blocks=2,
                depths=[1, 1],
                sr_ratios=[2, 1],
                hidden_sizes=[16, 32],
                num_attention_heads=[1, 2],
                decoder_hidden_size=32,
            )
        ),
        lambda n: (torch.randn(1, 3, 4 * n, 64),),
        ["pixels"],
        {"pixels": {2: "H"}},
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_huggingface_architecture(tmp_path: Path, name: str) -> None:
    build, inputs, names, dynamic_axes = CASES[name]
    torch.manual_seed(0)
    model = FirstOutput(build()).eval()
    args: Any = inputs(12)
    path = export_model_to_nnef(
        model, args, tmp_path / f"{name}.nnef.tgz", TractNNEF(check_io=True, dynamic_axes=dynamic_axes), names
    )
    if dynamic_axes:  # a third size, beyond the two the check ran
        third = inputs(21)
        (got,) = TractModel(path).run(list(third))
        with torch.no_grad():
            expected = model(*third)
        torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-4, rtol=1e-3)

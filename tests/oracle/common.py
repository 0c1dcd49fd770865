"""What the oracle scripts share: the tiny architectures, the LoRA/optimizer settings of each
reference run, seeds, and the error metric.

Each architecture exercises different features so that, together, the four cover what axl
claims to load and train:

  llama    llama3 rope scaling (original_max_position_embeddings small enough that T=16 sees
           all three frequency bands), untied LM head, all-linear LoRA, gradient clipping that
           fires on every step.
  mistral  saved in bf16 and sharded through model.safetensors.index.json, untied, all-linear.
  qwen2    q/k/v biases, explicit target_modules list, rsLoRA, clipping at 1.0.
  qwen3    head_dim (32) != hidden/heads (16), q/k norms, tied embeddings, DoRA.
"""
import json
import os
import zlib

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402  (after the environment that quiets transformers)
import transformers  # noqa: E402

transformers.utils.logging.disable_progress_bar()

BATCH = 2
SEQ = 16
TRAIN_STEPS = 5
VOCAB = 256

COMMON_CONFIG = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    rms_norm_eps=1e-6,
    bos_token_id=1,
    eos_token_id=2,
)

ARCHS = {
    "llama": dict(
        config_class="LlamaConfig",
        config=dict(
            tie_word_embeddings=False,
            rope_parameters=dict(
                rope_type="llama3",
                rope_theta=10000.0,
                factor=4.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=64,
            ),
        ),
        save_dtype="float32",
        max_shard_size=None,
        lora=dict(r=4, lora_alpha=8, target_modules="all-linear", use_rslora=False, use_dora=False),
        # Below every step's gradient norm (checked when generating), so clipping always acts.
        max_grad_norm=0.5,
    ),
    "mistral": dict(
        config_class="MistralConfig",
        config=dict(tie_word_embeddings=False, rope_parameters=dict(rope_type="default", rope_theta=10000.0)),
        save_dtype="bfloat16",
        max_shard_size="64KB",
        lora=dict(r=4, lora_alpha=8, target_modules="all-linear", use_rslora=False, use_dora=False),
        max_grad_norm=0.0,
    ),
    "qwen2": dict(
        config_class="Qwen2Config",
        config=dict(tie_word_embeddings=False, rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
        save_dtype="float32",
        max_shard_size=None,
        lora=dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], use_rslora=True,
                  use_dora=False),
        max_grad_norm=1.0,
    ),
    "qwen3": dict(
        config_class="Qwen3Config",
        config=dict(tie_word_embeddings=True, head_dim=32,
                    rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
        save_dtype="float32",
        max_shard_size=None,
        lora=dict(r=4, lora_alpha=8, target_modules="all-linear", use_rslora=False, use_dora=True),
        max_grad_norm=0.0,
    ),
}

OPTIMIZER = dict(lr=1e-3, weight_decay=0.01, beta1=0.9, beta2=0.999, eps=1e-8)

# Largest |axl - PEFT| allowed per element of the trained adapter (tests/api/oracle_test.cpp
# kAdapterTolerance). fp32 noise after 5 steps is ~1e-6; leaving out weight decay moves the
# result by ~2.5e-5 and peft_reference.py checks every such feature stays visible above 2x this.
ADAPTER_TOLERANCE = 1e-5


def arch_seed(arch: str, purpose: str) -> int:
    """A fixed seed per (architecture, purpose), so every input is random but reproducible."""
    return zlib.crc32(f"{arch}/{purpose}".encode()) & 0x7FFFFFFF


def make_tokens(arch: str, purpose: str, shape) -> torch.Tensor:
    g = torch.Generator().manual_seed(arch_seed(arch, purpose))
    return torch.randint(0, VOCAB, shape, generator=g, dtype=torch.int64)


def make_labels(arch: str, purpose: str, tokens: torch.Tensor) -> torch.Tensor:
    """Labels = tokens with a masked prompt at the start of row 0 and ~20% random -100s."""
    g = torch.Generator().manual_seed(arch_seed(arch, purpose + "/mask"))
    labels = tokens.clone()
    labels[0, :4] = -100
    labels[torch.rand(tokens.shape, generator=g) < 0.2] = -100
    return labels


def load_base(model_dir: str):
    """The checkpoint as transformers reads it back, computing in fp32 with eager attention."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model


def relative_max_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max|got-ref| / max|ref|: the metric behind every logits tolerance of the oracle tests."""
    scale = ref.abs().max().item()
    assert scale > 0, "reference is all zeros"
    return (got.double() - ref.double()).abs().max().item() / scale


def write_json(path, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")

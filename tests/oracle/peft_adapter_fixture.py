"""A DoRA adapter directory written by PEFT itself, for tests/unit/lora/peft_adapter_test.cpp
(PeftAdapter.LoadsAnAdapterWrittenByPeft). Run by hand:

  .cache/oracle-venv/bin/python tests/oracle/peft_adapter_fixture.py \
      --out tests/unit/lora/data/peft_dora_adapter

The base model has the shapes of tests/unit/lora/tiny_model.hpp's default (2 layers, hidden 16,
intermediate 24, 4 heads, 2 KV heads); its weights do not matter to the test. target_modules
"all-linear" makes PEFT write the expanded list of full module paths.
"""
import argparse

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    model = get_peft_model(LlamaForCausalLM(config),
                           LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, target_modules="all-linear",
                                      use_dora=True, use_rslora=True, init_lora_weights=False,
                                      task_type="CAUSAL_LM"))
    model.save_pretrained(args.out)


if __name__ == "__main__":
    main()

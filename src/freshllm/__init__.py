"""freshllm: keep instruction-tuned LLMs up to date without instruction fine-tuning.

Continued pre-training of the base model on fresh news, then adding the instruction
residual ``R = instruct - base`` back (Jindal et al., "Balancing Continuous Pre-Training
and Instruction Fine-Tuning").
"""

__version__ = "0.1.0"

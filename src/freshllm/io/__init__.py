"""Storage formats: packed sequences, streamed safetensors shards, Hugging Face model dirs."""

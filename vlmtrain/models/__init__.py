"""Model builders: Hugging Face loaders and offline tiny twins."""

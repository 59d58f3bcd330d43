"""VQTalker: the GRFSQ facial motion tokenizer (stage 1), the coarse-to-fine BERT that maps
speech tokens to motion tokens (stage 2), their training (torchrun DDP) and inference."""

"""Meta-training (batched Reptile) and few-shot evaluation."""

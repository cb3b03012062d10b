"""Teacher -> student: mask decay (channel masks, selection, exact merge), the sparsity losses, and the
two-phase distillation run."""

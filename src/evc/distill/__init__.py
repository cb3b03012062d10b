"""Teacher -> student: mask decay (channel masks, selection, exact merge) and, later, its training."""

"""Training: the variable-rate rate-distortion objective, data, checkpoints, logging, DDP.

    evc train --model EVC-LL --data ../shared/data/train --out runs/ll --steps 100000
    torchrun --nproc_per_node 8 -m evc train --model EVC-LL --data ... --out runs/ll

The pieces are reusable: mask decay and the scalable encoder train with the same loop (see trainer.py).
"""

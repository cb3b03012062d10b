"""Network pieces of the codec: building blocks, analysis/synthesis transforms, hyperprior, tiling, and
exact fixed-point evaluation."""

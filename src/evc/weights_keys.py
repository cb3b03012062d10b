"""The metadata keys of a weights file, every one of them (values are strings; JSON where noted).

evc.models.weights writes and reads them and re-exports them, so code imports them from there. They
live here, in a module that imports nothing, for evc.models.metadata (`evc models` and `evc info` read
metadata without torch) and for the GPU kit (scripts/gpu/kit.py, pack.py): it reads weights metadata
with safetensors alone and loads this file by its path, so it needs no importable evc (evc/__init__.py
imported torch until issue 39: seconds of a device call the trainer spends again).
"""

MODEL_KEY = "evc.model"  # the registry name
PARTS_KEY = "evc.parts"  # how many files the weights are split into
ANCHORS_KEY = "evc.anchors_q_scale"  # JSON list: q_scale of each rate anchor, lowest rate first
# The run record the trainer writes (shown by model cards):
STEPS_KEY = "evc.training_steps"
IMAGES_SEEN_KEY = "evc.images_seen"  # training crops, all processes together
DATA_KEY = "evc.data"  # JSON list of training data folders
HELD_OUT_KEY = "evc.held_out"  # how many of the data's photos were held out of training (the validation split)
CROP_KEY = "evc.crop"  # crop side in pixels
LAMBDAS_KEY = "evc.lambdas"  # JSON list, one per rate anchor
INIT_WEIGHTS_KEY = "evc.init_weights"
DATE_KEY = "evc.date"  # ISO 8601, UTC
TRAINING_SECONDS_KEY = "evc.training_seconds"
DEVICE_KEY = "evc.device"
RECIPE_KEY = "evc.recipe"
EMA_KEY = "evc.ema"  # in an export of the weight average only: "decay 0.999 from step 0"
# Training over every run in the weights' lineage (this run plus the runs its init weights came from):
TOTAL_SECONDS_KEY = "evc.total_training_seconds"
TOTAL_STEPS_KEY = "evc.total_training_steps"
TOTAL_IMAGES_SEEN_KEY = "evc.total_images_seen"
DISTILLED_FROM_KEY = "evc.distilled_from"  # mask decay: the teacher's name
SPARSITY_KEY = "evc.sparsity"  # mask decay: the sparsity loss's kind
# Added when weights ship (scripts/ship_weights.py):
VERSION_KEY = "evc.version"
KODAK_KEY = "evc.kodak"  # JSON: {"bpp": [...], "psnr": [...], "bd_rate": {anchor name: percent}, "images": n}

"""Where the shared data lives in a development checkout: ``../shared`` next to the repository.

Paths only, no other evc import, so every layer may use it (training validation, evaluation, scripts).
"""

from __future__ import annotations

from pathlib import Path

SHARED_DIR = Path(__file__).resolve().parents[3] / "shared"
KODAK_DIR = SHARED_DIR / "data" / "kodak"
TRAIN_DIR = SHARED_DIR / "data" / "train"

# The validation split: 16 of the training photos, held out of training (``TrainConfig.holdout``), on
# which recipes and shipping are decided; Kodak is the test set and only reports. Drawn once, by
# source, with random.Random(2026) from the sorted manifest: 5 CUrban100, 4 CSun, 3 CBSD68, 2 wiki,
# 1 plasma wallpaper, 1 wallpaper. Names are relative to the shard root (TRAIN_DIR/manifest.json).
# The legs before 2026-12-03 (v0, v1, campaign-init) trained on these photos too.
VALIDATION_PHOTOS = (
    "shard-0/CUrban100-img_067.jpg",
    "shard-1/CUrban100-img_083.jpg",
    "shard-2/CUrban100-img_093.jpg",
    "shard-2/CUrban100-img_094.jpg",
    "shard-4/CUrban100-img_012.jpg",
    "shard-1/CSun_Hays80-aqueduct_sun_ancegghzusmmvzjn.jpg",
    "shard-2/CSun_Hays80-candy_store_sun_aoqcvifuszwpcvcj.jpg",
    "shard-4/CSun_Hays80-stadium_football_sun_bzdvbhfueegligps.jpg",
    "shard-4/CSun_Hays80-watering_hole_sun_bcfdkbsrughwqwtt.jpg",
    "shard-3/CBSD68-236037.jpg",
    "shard-3/CBSD68-241048.jpg",
    "shard-4/CBSD68-147091.jpg",
    "shard-0/wiki-train-001.jpg",
    "shard-2/wiki-train-020.jpg",
    "shard-3/wallpapers-plasma-ColorfulCups.jpg",
    "shard-0/wallpapers-LadyBird.jpg",
)


# The training sample: 16 photos the campaign trains on, with the split's mix of sources, so that the
# gap between a model's RD on them and on the split shows how far it fits its training photos rather
# than photos in general (issue 37). Drawn once, by source, with random.Random(2027) from the sorted
# manifest less the split: 5 CUrban100, 4 CSun, 3 CBSD68, 2 wiki, 1 plasma wallpaper, 1 wallpaper.
TRAIN_SAMPLE_PHOTOS = (
    "shard-0/CUrban100-img_063.jpg",
    "shard-2/CUrban100-img_080.jpg",
    "shard-0/CUrban100-img_041.jpg",
    "shard-0/CUrban100-img_004.jpg",
    "shard-4/CUrban100-img_038.jpg",
    "shard-3/CSun_Hays80-brewery_sun_admdlkpsznknrcqi.jpg",
    "shard-3/CSun_Hays80-pagoda_sun_bnplkvpfjuzxhnjx.jpg",
    "shard-1/CSun_Hays80-waterfall_plunge_sun_bjwxsiaofeanyezl.jpg",
    "shard-3/CSun_Hays80-cliff_sun_bufxhmtcaobdrgvd.jpg",
    "shard-1/CBSD68-210088.jpg",
    "shard-2/CBSD68-148026.jpg",
    "shard-2/CBSD68-163085.jpg",
    "shard-0/wiki-train-022.jpg",
    "shard-3/wiki-train-018.jpg",
    "shard-0/wallpapers-plasma-Patak.jpg",
    "shard-1/wallpapers-Dune.jpg",
)


def validation_photo_paths(train_dir: Path = TRAIN_DIR) -> list[Path]:
    """The validation split's files under ``train_dir`` (the shard root), in VALIDATION_PHOTOS order."""
    return [train_dir / name for name in VALIDATION_PHOTOS]


def train_sample_photo_paths(train_dir: Path = TRAIN_DIR) -> list[Path]:
    """The training sample's files under ``train_dir``, in TRAIN_SAMPLE_PHOTOS order."""
    return [train_dir / name for name in TRAIN_SAMPLE_PHOTOS]

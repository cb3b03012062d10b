"""Prepare a GPU call: a compact training pack, the wheels, and a working tree that fits what travels.

    python scripts/gpu/pack.py prepare    # build .gpu-pack/, fetch .whl/, hide shipped weights, print the travel size
    python scripts/gpu/pack.py restore    # after the GPU calls: put the hidden weights back
    python scripts/gpu/pack.py size       # the travel size now (tree + carried folders)

`prepare` prints the carry list of each call: [".whl", ".gpu-pack"] for train.sh, and for check.sh
".whl" plus the staged shipped weights of the benchmarked models that fit (".gpu-stash/src/evc/weights/
EVC-SS", to benchmark trained weights when no run of this machine made newer ones).

The device tool sends the checkout's tracked and untracked-not-ignored files plus the carried folders,
64 MiB at most. Shipped weights are tracked (EVC-LL is 33 MiB in fp16), so `prepare` moves every
src/evc/weights/<MODEL>/ folder into the ignored .gpu-stash/ (`restore` moves them back) and copies the
weights the run starts from into the pack instead. The training images fill what is left: photos from
../shared/data/train, downscaled by one common factor (never below the crop on the short side) and saved
as JPEG q95 4:4:4, with a manifest.json the trainer reads; plus a few Kodak PNGs for validation only.

    .gpu-pack/train/        training images + manifest.json
    .gpu-pack/kodak/        the first --val-images Kodak images (validation, never training)
    .gpu-pack/init/         the weights to resume from (absent: train from scratch)
    .gpu-pack/pack.json     what is in the pack
    .whl/                   constriction's cp312 wheel (the GPU machine has no constriction)
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
LIMIT = 64 * 2**20  # the device tool's limit on what travels
PACK, WHEELS, STASH = ".gpu-pack", ".whl", ".gpu-stash"
CARRY = (WHEELS, PACK)
WEIGHTS = Path("src/evc/weights")
# The device README's download line for a cp312 manylinux wheel (pip matches the platform tags exactly).
PIP_DOWNLOAD = [
    "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
    "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_27_x86_64",
    "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
    "--platform", "manylinux1_x86_64",
]
WHEEL_SPECS = ("constriction==0.5.0",)


def _load_kit():
    """scripts/gpu/kit.py, the device side, loaded by its path (scripts/ is not a package) and registered
    in sys.modules, which its dataclasses need. It imports nothing but the standard library and
    src/evc/weights_keys.py (no torch), so the pack shares its weights keys and its default benchmark."""
    name = "evc_gpu_kit"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("kit.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules[name]


KEYS = _load_kit().KEYS


class PackError(Exception):
    pass


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


# -- what travels -----------------------------------------------------------------------------------
def tree_files(repo: Path) -> list[Path]:
    """Files the tool sends: tracked and untracked-not-ignored, as they exist now (paths relative to repo)."""
    try:
        listing = subprocess.run(
            ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            check=True, capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise PackError(f"{repo} is not a git checkout ({exc})") from None
    names = sorted({n for n in listing.decode().split("\0") if n})
    return [Path(n) for n in names if (repo / n).is_file() and not (repo / n).is_symlink()]


def folder_bytes(folder: Path) -> int:
    if not folder.exists():
        return 0
    if folder.is_file():
        return folder.stat().st_size
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def shipped_weight_dirs(repo: Path) -> list[Path]:
    """src/evc/weights/<MODEL>/ folders holding weights (relative to repo)."""
    root = repo / WEIGHTS
    if not root.is_dir():
        return []
    return [WEIGHTS / d.name for d in sorted(root.iterdir()) if d.is_dir() and any(d.glob("*.safetensors"))]


def tree_bytes(repo: Path, hide_weights: bool = False) -> tuple[int, int]:
    """(bytes, files) of the tree that travels; with ``hide_weights``, as it will be once staged."""
    hidden = tuple(str(d) + "/" for d in shipped_weight_dirs(repo)) if hide_weights else ()
    files = [f for f in tree_files(repo) if not str(f).startswith(hidden)] if hidden else tree_files(repo)
    return sum((repo / f).stat().st_size for f in files), len(files)


def travel_report(repo: Path, carry: tuple[str, ...] = CARRY) -> tuple[int, str]:
    tree, count = tree_bytes(repo)
    parts = [f"tree {mib(tree)} ({count} files)"]
    total = tree
    for path in carry:
        size = folder_bytes(repo / path)
        total += size
        parts.append(f"{path} {mib(size)}" if (repo / path).exists() else f"{path} (missing)")
    verdict = "fits" if total < LIMIT else "TOO LARGE"
    return total, f"travel: {' + '.join(parts)} = {mib(total)} of {mib(LIMIT)}: {verdict}"


def require_ignored(repo: Path, *folders: str) -> None:
    """The kit's folders must be ignored by git, else they would travel inside the tree as well."""
    for folder in folders:
        probe = subprocess.run(["git", "-C", str(repo), "check-ignore", "-q", f"{folder}/probe"])
        if probe.returncode != 0:
            raise PackError(f"{folder}/ is not ignored by git in {repo}; add /{folder}/ to .gitignore")


# -- staging ---------------------------------------------------------------------------------------
def stage(repo: Path) -> list[str]:
    """Move shipped weights out of the tree (into the ignored .gpu-stash/); returns the models moved."""
    require_ignored(repo, STASH)
    moved = []
    for rel in shipped_weight_dirs(repo):
        target = repo / STASH / rel
        if target.exists():
            raise PackError(f"{target} already exists: run `pack.py restore` first")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(repo / rel), str(target))
        moved.append(rel.name)
    return moved


def restore(repo: Path) -> list[str]:
    """Move staged weights back; refuses to overwrite weights that reappeared meanwhile."""
    stash = repo / STASH / WEIGHTS
    folders = sorted(stash.iterdir()) if stash.is_dir() else []
    for folder in folders:  # check all before moving any
        target = repo / WEIGHTS / folder.name
        if target.exists() and any(target.iterdir()):
            raise PackError(f"{target} exists again; compare it with {folder} and move one of them by hand")
    for folder in folders:
        target = repo / WEIGHTS / folder.name
        if target.exists():
            target.rmdir()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder), str(target))
    return [f.name for f in folders]


def shipped(repo: Path, model: str) -> Path | None:
    """The shipped weights of ``model``, in the tree or staged."""
    for folder in (repo / WEIGHTS / model, repo / STASH / WEIGHTS / model):
        if any(folder.glob("*.safetensors")):
            return folder
    return None


# -- the pack --------------------------------------------------------------------------------------
def _source_images(data: Path) -> list[tuple[Path, int, int]]:
    """(path, width, height) of the training images: from manifest.json, else every image in the folder."""
    from PIL import Image

    manifest = data / "manifest.json"
    if manifest.is_file():
        return [(data / e["file"], int(e["width"]), int(e["height"])) for e in json.loads(manifest.read_text())]
    if not data.is_dir():
        raise PackError(f"training data not found: {data}")
    found = []
    for p in sorted(data.rglob("*")):
        if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"} and p.is_file():
            with Image.open(p) as im:
                found.append((p, *im.size))
    return found


def _encode(job: tuple[str, float, int]) -> tuple[bytes, int, int]:
    """One training image at ``scale`` (short side kept >= min_side): JPEG q95 4:4:4, or the source bytes
    unchanged when it is a JPEG that needs no scaling (no second generation of loss)."""
    from PIL import Image, ImageOps

    path, scale, min_side = job
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        w, h = im.size
        s = min(1.0, max(scale, min_side / min(w, h)))
        if s > 0.999 and Path(path).suffix.lower() in {".jpg", ".jpeg"}:
            return Path(path).read_bytes(), w, h
        if s <= 0.999:
            w, h = round(w * s), round(h * s)  # s >= min_side / short side, so the short side stays >= min_side
            im = im.resize((w, h), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        im.save(buffer, format="JPEG", quality=95, subsampling=0)
        return buffer.getvalue(), w, h


def build_train(data: Path, folder: Path, budget: int, min_side: int) -> dict:
    """Write the training images into ``folder`` within ``budget`` bytes; returns a description."""
    sources = [s for s in _source_images(data) if min(s[1], s[2]) >= min_side]
    if not sources:
        raise PackError(f"no training images of at least {min_side} px on the short side in {data}")
    if any(s[0].name.lower().startswith("kodim") for s in sources):
        raise PackError(f"{data} holds Kodak images; Kodak is never used for training")
    source_bytes = sum(s[0].stat().st_size for s in sources)
    # Bytes grow a little slower than pixels shrink (downscaled pixels hold more detail), hence the
    # 0.9 and the re-tries with a measured correction.
    scale = min(1.0, (budget / source_bytes * 0.9) ** 0.5)
    workers = max(1, min(8, os.cpu_count() or 1))
    for attempt in range(6):
        with ProcessPoolExecutor(workers) as pool:
            encoded = list(pool.map(_encode, [(str(p), scale, min_side) for p, _, _ in sources], chunksize=4))
        total = sum(len(e[0]) for e in encoded)
        print(f"pack: training images at scale {scale:.3f}: {mib(total)} (budget {mib(budget)})")
        if total <= budget:
            break
        if scale <= 0.05:
            raise PackError(f"the training images do not fit in {mib(budget)} even at scale {scale:.3f}")
        scale *= min(0.97, (budget / total) ** 0.5 * 0.97)
    else:
        raise PackError(f"the training images did not fit in {mib(budget)} after {attempt + 1} tries")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    entries, names = [], set()
    for (path, _, _), (data_bytes, w, h) in zip(sources, encoded):
        name = path.stem + ".jpg"
        if name in names:  # same name in two shards
            name = f"{path.parent.name}-{name}"
        names.add(name)
        (folder / name).write_bytes(data_bytes)
        entries.append({"file": name, "width": w, "height": h, "bytes": len(data_bytes)})
    (folder / "manifest.json").write_text(json.dumps(entries, indent=1) + "\n")
    return {"source": str(data), "images": len(entries), "scale": round(scale, 4), "bytes": total,
            "pixels": sum(e["width"] * e["height"] for e in entries), "min_side": min_side}


def fetch_wheels(repo: Path) -> list[str]:
    """constriction's cp312 manylinux wheel in .whl/ (downloaded with pip if missing)."""
    folder = repo / WHEELS
    have = sorted(p.name for p in folder.glob("*.whl")) if folder.is_dir() else []
    for spec in WHEEL_SPECS:
        name, version = spec.split("==")
        if any(w.startswith(f"{name}-{version}-cp312-") for w in have):
            continue
        print(f"pack: fetching {spec} (cp312 manylinux) into {WHEELS}/")
        subprocess.run([sys.executable, "-m", "pip", *PIP_DOWNLOAD, "-d", str(folder), spec], check=True)
    have = sorted(p.name for p in folder.glob("*.whl"))
    projects = [w.split("-")[0].lower() for w in have]
    doubles = sorted({p for p in projects if projects.count(p) > 1})
    if doubles:  # pip --target stops on two versions of one project
        raise PackError(f"{WHEELS}/ holds more than one wheel of {', '.join(doubles)}; keep one of each")
    return have


def _weights_steps(folder: Path) -> dict:
    """Provenance of a weights folder from its metadata (without importing torch)."""
    from safetensors import safe_open

    first = sorted(folder.glob("*.safetensors"))[0]
    with safe_open(str(first), framework="numpy") as f:
        meta = f.metadata() or {}
    keys = (KEYS.MODEL_KEY, KEYS.STEPS_KEY, KEYS.IMAGES_SEEN_KEY, KEYS.DATE_KEY)
    return {k.removeprefix("evc."): meta.get(k) for k in keys}  # pack.json: model, training_steps, ...


def prepare(args: argparse.Namespace) -> int:
    repo = args.repo.resolve()
    pack = (args.pack or repo / PACK).resolve()
    # The weights to start from: given, else the shipped ones (looked up before they are staged).
    init = None
    if args.init == "auto":
        init = shipped(repo, args.model)
    elif args.init != "none":
        init = Path(args.init)
        if not (init.is_dir() and any(init.glob("*.safetensors"))) and not init.suffix == ".safetensors":
            raise PackError(f"--init {init}: not a weights folder or .safetensors file")
    if pack == repo / PACK:
        require_ignored(repo, PACK)
    if not args.skip_wheels:
        require_ignored(repo, WHEELS)
    if not args.no_stage:
        moved = stage(repo)
        if moved:
            print(f"pack: staged (moved to {STASH}/, restore with `pack.py restore`): {', '.join(moved)}")
    wheels = [] if args.skip_wheels else fetch_wheels(repo)
    if pack.exists():
        shutil.rmtree(pack)
    pack.mkdir(parents=True)
    description: dict = {"created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "model": args.model}
    if init is not None:
        (pack / "init").mkdir()
        for f in sorted(init.glob("*.safetensors")) if init.is_dir() else [init]:
            shutil.copy2(f, pack / "init" / f.name)
        meta = _weights_steps(pack / "init")
        if meta.get("model") not in (None, args.model):
            raise PackError(f"--init {init} holds {meta.get('model')}, not {args.model}")
        description["init"] = {"source": str(init), "bytes": folder_bytes(pack / "init"), **meta}
    kodak = sorted(p for p in args.kodak.glob("*.png"))[: args.val_images] if args.kodak.is_dir() else []
    if args.val_images and not kodak:
        raise PackError(f"no Kodak PNGs in {args.kodak} (validation needs --val-images of them; 0 turns it off)")
    (pack / "kodak").mkdir()
    for p in kodak:
        shutil.copy2(p, pack / "kodak" / p.name)
    description["kodak"] = [p.name for p in kodak]
    # Everything else first; the training images take what is left.
    tree, _ = tree_bytes(repo)
    fixed = tree + folder_bytes(repo / WHEELS) + folder_bytes(pack) + 4096  # + pack.json
    budget = LIMIT - int(args.margin_mib * 2**20) - fixed
    if budget < 2**20:
        raise PackError(f"only {mib(max(budget, 0))} left for training images (tree {mib(tree)}, rest {mib(fixed - tree)})")
    if args.max_data_mib:
        budget = min(budget, int(args.max_data_mib * 2**20))
    description["train"] = build_train(args.data, pack / "train", budget, args.min_side)
    description["wheels"] = wheels
    (pack / "pack.json").write_text(json.dumps(description, indent=1) + "\n")
    carry = tuple(c for c in CARRY if (repo / c).exists()) if pack == repo / PACK else ()
    total, report = travel_report(repo, carry)
    print(f"pack: {description['train']['images']} training images, {len(kodak)} Kodak, "
          f"init: {description.get('init', {}).get('source', 'none (from scratch)')}")
    print(f"train.sh call: {report}")
    print(f"train.sh call: carry {json.dumps(list(carry))}")
    check_carry = check_call_carry(repo)
    print(f"check.sh call: {travel_report(repo, check_carry)[1]}")
    print(f"check.sh call: carry {json.dumps(list(check_carry))}")
    return 0 if total < LIMIT else 1


# The models check.sh benchmarks by default; crossdev.py codes with seeded random models.
BENCHED = tuple(case.split(":")[0] for case in _load_kit().DEFAULT_BENCH.split(","))


def check_call_carry(repo: Path, models: tuple[str, ...] = BENCHED) -> tuple[str, ...]:
    """What the check call carries: the wheels, and of the staged shipped weights only the benchmarked
    models' folders (.gpu-stash/src/evc/weights/<MODEL>), each while the total still fits; the warm
    machine still holds the pack from the first call. Others (Scale-SS: 29 MiB) stay home."""
    carry = tuple(c for c in (WHEELS,) if (repo / c).exists())
    for model in models:
        folder = f"{STASH}/{WEIGHTS / model}"
        if (repo / folder).is_dir() and travel_report(repo, (*carry, folder))[0] < LIMIT:
            carry += (folder,)
    return carry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout (default: this one)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="stage, build the pack, fetch wheels, print the travel size")
    p.add_argument("--model", default="EVC-LL", help="the model the run trains (for --init auto)")
    p.add_argument("--init", default="auto",
                   help="weights to resume from: a folder or file, 'auto' (the shipped ones if any) or 'none'")
    p.add_argument("--data", type=Path, default=SHARED / "train", help="training images (shard root or folder)")
    p.add_argument("--kodak", type=Path, default=SHARED / "kodak", help="Kodak folder (validation images)")
    p.add_argument("--val-images", type=int, default=4, help="Kodak images to carry for validation")
    p.add_argument("--min-side", type=int, default=256, help="short side of a training image at least (the crop)")
    p.add_argument("--margin-mib", type=float, default=1.5, help="room kept below the 64 MiB limit")
    p.add_argument("--max-data-mib", type=float, default=0, help="cap on the training images (0: what fits)")
    p.add_argument("--pack", type=Path, help=f"pack folder (default: REPO/{PACK})")
    p.add_argument("--no-stage", action="store_true", help="leave shipped weights in the tree")
    p.add_argument("--skip-wheels", action="store_true", help="do not fetch or check .whl/")
    sub.add_parser("restore", help="move staged weights back into src/evc/weights/")
    sub.add_parser("stage", help="only move shipped weights out of the tree")
    p = sub.add_parser("size", help="print the travel size")
    p.add_argument("--carry", action="append", help=f"carried folders (default: {' '.join(CARRY)})")
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            if args.val_images < 0 or args.min_side < 64:
                raise PackError("--val-images must be >= 0 and --min-side >= 64")
            return prepare(args)
        if args.command == "stage":
            print(f"pack: staged {', '.join(stage(args.repo)) or 'nothing'}")
            return 0
        if args.command == "restore":
            print(f"pack: restored {', '.join(restore(args.repo)) or 'nothing'}")
            return 0
        total, report = travel_report(args.repo, tuple(args.carry or CARRY))
        print(report)
        return 0 if total < LIMIT else 1
    except (PackError, subprocess.CalledProcessError, OSError) as exc:
        print(f"pack: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

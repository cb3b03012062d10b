"""Coverage-guided fuzzing of the decoder with atheris (libFuzzer), using evcfuzz's structure-aware mutator.

libFuzzer keeps the inputs that reach new lines of evc's (instrumented) Python code and mutates those;
the custom mutator below parses each input as an .evc file and applies the same field and stream
mutations as evcfuzz.py (re-sealing the container CRC), falling back to libFuzzer's byte mutations
for inputs that no longer parse. Every third input (by content) also gets its symbols CRC forged.
libFuzzer's own watchdogs catch hangs (-timeout) and runaway memory (-rss_limit_mb); an uncaught
exception (anything but EVCError) or a broken oracle stops the run and writes the input to crash-*.

    pip install atheris
    mkdir -p /tmp/evc-atheris && python fuzz/atheris_fuzz.py /tmp/evc-atheris fuzz/corpus/seeds \\
        -max_total_time=600 -timeout=30 -rss_limit_mb=4096 -max_len=20000

The first folder receives the interesting inputs libFuzzer finds (keep it outside the repository).
"""

from __future__ import annotations

import random
import sys
import zlib
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports(include=["evc"]):
    import evc
    import evc.bitstream.container
    import evc.codec
    import evc.entropy.coder
    import evc.entropy.latent_codec
    import evc.models.evc  # noqa: F401

from evcfuzz import Harness, RawFile, havoc, mutate

HARNESS = Harness().setup()


def test_one_input(data: bytes) -> None:
    """The contract for one input: container target, then the decoder (with a forged symbols CRC for a
    third of the inputs). EVCError is an answer; anything else propagates and libFuzzer reports it."""
    HARNESS.check_container(data)
    if zlib.crc32(data) % 3 == 0:
        data = HARNESS.forge_symbols_crc(data)
    HARNESS.check_decode(data)


def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    raw = RawFile.from_bytes(data)
    if raw is None or rng.random() < 0.1:
        if rng.random() < 0.5:
            return atheris.Mutate(data, max_size)
        return havoc(data, rng)[0][:max_size]
    if rng.random() < 0.15:
        mutated, _ = HARNESS.mutate_symbols(raw.to_bytes(), rng)
        return mutated[:max_size]
    mutated_raw, _ = mutate(raw, rng, HARNESS.raw_seeds, HARNESS.fingerprints)
    return mutated_raw.to_bytes()[:max_size]


def main() -> None:
    atheris.Setup(sys.argv, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

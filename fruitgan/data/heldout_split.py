"""The held-out split: which real drawings of a fruit are kept out of GAN training, and its two parts.

rawDataToImage.py records ``choose_heldout`` in the version's metadata and the NPZ's ``heldout`` array;
data_loader.py divides the held-out drawings with ``validation_mask``: the **validation part** picks each
fruit's best checkpoint, the **test part** (never part of any choice) gives the figures reported.
Both are seeded by the fruit's name only, so every version made from the same drawings holds out the same."""
from __future__ import annotations

import zlib

import numpy as np

from fruitgan.util import settings as st

# Figures measured on the validation part are recorded under this prefix ("val_two_sample_accuracy"), beside
# the test part's under the plain names: a reader never takes a figure that chose the checkpoint for the test's.
VALIDATION_PREFIX = "val_"


def validation_key(name: str) -> str:
    """The record key of figure ``name`` measured on the validation part."""
    return VALIDATION_PREFIX + name


def validation_as_plain(figures: dict) -> dict:
    """``figures`` with the validation part's figures under the plain names (replacing any plain ones)."""
    out = {k: v for k, v in figures.items() if not k.startswith(VALIDATION_PREFIX)}
    out.update({k[len(VALIDATION_PREFIX):]: v for k, v in figures.items() if k.startswith(VALIDATION_PREFIX)})
    return out


def heldout_size(real_count: int) -> int:
    """How many real drawings a split holds out (settings.HELDOUT_*); 0 when too few for one."""
    wanted = max(round(st.HELDOUT_SHARE * real_count), st.HELDOUT_MIN)
    held = min(wanted, int(st.HELDOUT_MAX_SHARE * real_count))
    return held if held >= st.SPLIT_MIN_HELDOUT else 0


def split_note(real_count: int) -> str:
    """Why a fruit has no split (the wording every figure that needs one shows instead of a number)."""
    return (f"not enough real drawings for a held-out split ({real_count} real; a split holds out at most "
            f"{st.HELDOUT_MAX_SHARE:.0%} and needs {st.SPLIT_MIN_HELDOUT})")


def split_seed_key(fruit: str) -> str:
    """The split's seed names the fruit only: the same drawings are held out in every version made from them
    (at any resolution, rerun or overwritten), so versions are measured on the same held-out drawings."""
    return f"heldout/{fruit}"


def choose_heldout(real_count: int, fruit: str) -> np.ndarray:
    """Sorted indices of the held-out real drawings: the same for the same fruit and count."""
    held = heldout_size(real_count)
    rng = np.random.default_rng(zlib.crc32(split_seed_key(fruit).encode()))
    return np.sort(rng.permutation(real_count)[:held])


def validation_size(heldout_count: int) -> int:
    """How many of the held-out drawings form the validation part (the rest is the test part)."""
    return int(round(st.VALIDATION_SHARE * heldout_count))


def validation_mask(heldout_count: int, fruit: str) -> np.ndarray:
    """(heldout_count,) bool over the held-out drawings in index order: True for the validation part."""
    rng = np.random.default_rng(zlib.crc32(f"validation/{fruit}".encode()))
    mask = np.zeros(heldout_count, dtype=bool)
    mask[rng.permutation(heldout_count)[:validation_size(heldout_count)]] = True
    return mask

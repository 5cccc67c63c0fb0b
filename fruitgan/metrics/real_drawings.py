"""Every fruit of rawData/ rendered in memory, for the all-fruit recogniser, held-out drawings left out."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, Iterable, Mapping, Sequence, Tuple, Union

import torch

from fruitgan.metrics.images import check_images, from_pixel_levels, pixel_levels

RECOGNIZER_MAX_PER_FRUIT = 500    # drawings rendered per fruit (memory and time stay bounded; file order)


def _pixel_key(pixels) -> bytes:
    """An image's identity: a digest of its (R,R) 8-bit pixels (a held-out PNG and the same drawing rendered again
    match); 16 bytes, so a full download's held-out drawings take megabytes, not their pixels' gigabyte."""
    return hashlib.blake2b(pixels.astype("uint8", copy=False).tobytes(), digest_size=16).digest()


def _excluded_pixel_keys(exclude_images) -> set:
    """Identities of (K,R,R) uint8 pixels or (K,1,R,R) images in [-1,1]: one tensor, or an iterable of them
    (e.g. one fruit's at a time, never all fruits' copied together)."""
    keys = set()
    for block in [exclude_images] if isinstance(exclude_images, torch.Tensor) else exclude_images or ():
        if block.dtype != torch.uint8 or block.dim() != 3:
            check_images("exclude_images", block)
            block = pixel_levels(block)[:, 0].to(torch.uint8)
        keys.update(_pixel_key(img.numpy()) for img in block.cpu())
    return keys


def _rendered_drawings(info, fruit: str, resolution: int):
    """Yield (key_id or None, (R,R) uint8) for each usable drawing of one rawData file, in file order."""
    from fruitgan.data import quickdraw_formats as qf
    from fruitgan.data import stroke_render as sr
    if info.format == qf.BITMAP:
        for row in qf.iter_bitmaps(info.path):
            if not qf.is_blank_bitmap(row):
                yield None, sr.image_array(sr.render_bitmap(row, resolution))
        return
    preset = qf.QUALITY_PRESETS[qf.DEFAULT_QUALITY]     # the drawings a default dataset would keep
    renderer = sr.StrokeRenderer(resolution)
    for drawing in qf.iter_drawings(info.path, fruit, info.format):
        if isinstance(drawing, qf.Drawing) and preset.reject_reason(drawing) is None:
            yield drawing.key_id, sr.image_array(renderer.render(drawing.strokes))


def render_rawdata_fruits(workdir: Path, resolution: int, exclude_key_ids: Sequence[str] = (),
                          exclude_images: Union[None, torch.Tensor, Iterable[torch.Tensor]] = None,
                          max_per_fruit: int = RECOGNIZER_MAX_PER_FRUIT,
                          formats="auto") -> Tuple[Dict[str, torch.Tensor], Dict[str, dict]]:
    """Every fruit with drawings in <workdir>/rawData/ rendered at ``resolution``, up to ``max_per_fruit`` each:
    ({fruit: (N,1,R,R) in [-1,1]}, {fruit: {"count", "excluded", "files"}}). ``formats``: "auto", a list, or
    {fruit: formats} (the others as a dataset of them would choose), so the recogniser sees the dataset's style.
    Skipped: key_ids in ``exclude_key_ids``, 8-bit pixels in ``exclude_images`` (bitmaps have no key_id; a
    tensor or an iterable of them, see _excluded_pixel_keys)."""
    from fruitgan.data import quickdraw_formats as qf
    from fruitgan.data.image_conversion import choose_files
    raw_dir = Path(workdir) / "rawData"
    if not raw_dir.is_dir():
        return {}, {}
    scan = qf.scan_raw_data(raw_dir)
    excluded_keys = {str(k) for k in exclude_key_ids}
    excluded_pixels = _excluded_pixel_keys(exclude_images)
    images: Dict[str, torch.Tensor] = {}
    details: Dict[str, dict] = {}
    for fruit in scan.fruits_with_data(qf.AUTO):
        files_there = scan.files_for(fruit)
        if not isinstance(formats, Mapping):
            chosen = qf.select_files(files_there, formats)
        elif fruit in formats:                      # a dataset's fruit: the formats its dataset used
            chosen = qf.select_files(files_there, formats[fruit])
        else:                                       # any other: what a dataset of it would use at this size
            chosen = choose_files(files_there, qf.AUTO, resolution)[0]
        if not chosen:                 # none in the formats asked for: the fruit is absent
            continue
        kept, seen, skipped, files = [], set(), 0, []
        for info in chosen:
            if len(kept) >= max_per_fruit:
                break
            files.append(scan.relative(info.path))
            for key_id, pixels in _rendered_drawings(info, fruit, resolution):
                if key_id is not None:
                    if key_id in seen:                  # raw files repeat the simplified drawings
                        continue
                    seen.add(key_id)
                if key_id in excluded_keys or _pixel_key(pixels) in excluded_pixels:
                    skipped += 1
                    continue
                kept.append(torch.from_numpy(pixels.copy()))
                if len(kept) >= max_per_fruit:
                    break
        if kept:
            images[fruit] = from_pixel_levels(torch.stack(kept).unsqueeze(1))
        details[fruit] = {"count": len(kept), "excluded": skipped, "files": files}
    return images, details

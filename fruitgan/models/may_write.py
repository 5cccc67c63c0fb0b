"""May this run write a model folder? The one rule, asked early by train_gan.py (before further prompts) and
again by the trainer under the folder's RunLock (another run may have started or finished since)."""
from __future__ import annotations

from fruitgan.models.folder import ModelFolder
from fruitgan.util.run_lock import refuse_if_held
from fruitgan.util.user_io import UserError

LOCK_ADVICE = "wait for it to finish or choose another --model-name"


def check_may_write(folder: ModelFolder, *, overwrite: bool = False, resume: bool = False) -> None:
    """A one-line UserError saying why this run may not write ``folder`` and what to do: another run writes it
    now; a new run's name is taken (without --overwrite); a resume finds no model there. Whether the saved
    settings of a resume can be read is config.load_resume's to say (it reads them, once)."""
    refuse_if_held(folder.path, f"model {folder.name}", LOCK_ADVICE)
    if resume and not folder.exists():
        if folder.path.is_dir():
            raise UserError(f"model {folder.name!r} has no saved settings ({folder.config_path().name} missing); "
                            "train it again with --overwrite")
        raise UserError(f"no model {folder.name!r} to resume in {folder.path.parent}; train it first (without "
                        "--resume)")
    if not resume and not overwrite and folder.exists():
        raise UserError(f"model {folder.name!r} already exists in {folder.path}; choose another --model-name, "
                        "continue it with --resume, or replace it with --overwrite")

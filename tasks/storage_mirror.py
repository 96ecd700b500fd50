"""Mirror a campaign folder to an fsspec URL and back: the local working copy of a campaign kept on an object store.

A campaign whose `storage.base` is an object-store URL (`memory://`, `s3://`, `gcs://`... whatever fsspec has a
filesystem for) runs in a local folder, because trainers, MLflow and the folder lock need real paths; this module
copies that folder to `<base>/<campaign_id>/` (`push_tree`) and back (`pull_tree`), so a worker on another host
finds the finished steps' files and Prefect results and recomputes none of them.

The push rule: every file under the folder except the lock (`LOCK`) whose size or modification time differs from
what this process last pushed or pulled (the `Manifest` the caller keeps); the first push of a process sends them
all. Remote files are never deleted: a campaign folder only grows (steps write their files whole by rename, and
trainers remove their scratch folders before a step ends), so nothing stale comes back on a pull.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fsspec.core import url_to_fs

LOCK = ".lock"  # the campaign folder's lock (flows/campaign_state.py): a property of one host's process, never copied

Manifest = dict[str, tuple[int, int]]  # relative POSIX path -> (size, mtime_ns) as last pushed or pulled


def local_files(folder: Path) -> Manifest:
    """The files under `folder` (hidden ones included, the lock excluded) with their size and mtime."""
    files: Manifest = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if relative != LOCK and path.is_file():
            stat = path.stat()
            files[relative] = (stat.st_size, stat.st_mtime_ns)
    return files


def push_tree(folder: Path, url: str, pushed: Manifest) -> Manifest:
    """Copy the files of `folder` that are new or changed since `pushed` to `url`, keeping their relative paths.

    Args:
        folder: The local campaign folder.
        url: The fsspec URL it is mirrored to (`<storage.base>/<campaign_id>`).
        pushed: What the last push (or pull) left in place; {} sends everything.

    Returns:
        The manifest to pass to the next push. A file changed while it was sent is sent again next time (its
        size and mtime are taken before the copy).
    """
    fs, root = url_to_fs(url)
    root = root.rstrip("/")
    now = local_files(folder)
    made: set[str] = set()
    for relative, stat in now.items():
        if pushed.get(relative) == stat:
            continue
        target = f"{root}/{relative}"
        parent = target.rsplit("/", 1)[0]
        if parent not in made:  # object stores have no folders (a no-op there); memory:// and file systems do
            fs.makedirs(parent, exist_ok=True)
            made.add(parent)
        fs.put_file(str(folder / relative), target)
    return now


def pull_tree(url: str, folder: Path) -> Manifest:
    """Copy everything stored under `url` into the new local folder `folder` (a working copy to resume in).

    The copy is made in a hidden sibling folder and renamed into place at the end, so an interrupted pull leaves
    no half folder that a later run would take for a working copy.

    Args:
        url: The campaign's mirror (`<storage.base>/<campaign_id>`).
        folder: Where the working copy goes; must not exist yet.

    Returns:
        The manifest of the copied files (a push right after sends none of them).

    Raises:
        FileNotFoundError: when nothing is stored under `url`.
    """
    fs, root = url_to_fs(url)
    root = root.rstrip("/")
    stored = [path for path in fs.find(root) if path.startswith(root + "/")]
    if not stored:
        raise FileNotFoundError(f"{url}: nothing stored there to resume from")
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.pull-"))
    try:
        for path in stored:
            local = scratch / path[len(root) + 1 :]
            local.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(path, str(local))
        scratch.rename(folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return local_files(folder)

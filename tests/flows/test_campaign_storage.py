"""A campaign with `storage.base` on an object store (fsspec `memory://`): a resume on a host without its folder
fetches the folder from the mirror, at the same path, and holds it like a local one."""

from __future__ import annotations

import shutil
from pathlib import Path

from fsspec.core import url_to_fs

from configs.loader import load_config
from flows.campaign_state import open_campaign, try_lock
from tasks.storage_mirror import local_files
from tasks.tracking_store import client_for


def test_a_resume_without_the_folder_fetches_it_from_the_mirror(tmp_path: Path) -> None:
    base = f"memory://campaign-storage/{tmp_path.name}"
    config = load_config(
        "tiny", [f"tracking.output_dir={tmp_path}", "tracking.experiment=storage-unit", f"storage.base={base}"]
    )
    first = open_campaign(config)
    assert first.workdir.parent == tmp_path and first.mirror == f"{base}/{first.campaign_id}"
    client = client_for(config.tracking)
    assert client.get_run(first.parent_run_id).data.tags["selftrain.storage"] == first.mirror
    (first.workdir / "round-01").mkdir()
    (first.workdir / "round-01" / "round_result.json").write_text('{"round": 1}')
    (first.workdir / ".prefect-results").mkdir()
    (first.workdir / ".prefect-results" / "9c1e").write_text("cached step")
    first.push()
    files = {p: (first.workdir / p).read_bytes() for p in local_files(first.workdir)}
    first.release()  # its process dies, and its host (or the local folder) is gone:
    shutil.rmtree(first.workdir)

    resumed = open_campaign(config)
    assert resumed.resumed and resumed.parent_run_id == first.parent_run_id and resumed.workdir == first.workdir
    assert {p: (resumed.workdir / p).read_bytes() for p in local_files(resumed.workdir)} == files
    assert try_lock(resumed.workdir) is None  # held, as a local folder's lock
    assert client.get_run(first.parent_run_id).info.status == "RUNNING"
    assert resumed.pushed == local_files(resumed.workdir)  # its next push sends only what changes from here
    resumed.release()

    # Died before its first push: nothing to resume from, so the same config starts a new campaign.
    fs, _ = url_to_fs(base)
    fs.rm(url_to_fs(first.mirror)[1], recursive=True)
    shutil.rmtree(first.workdir)
    fresh = open_campaign(config)
    assert not fresh.resumed and fresh.campaign_id != first.campaign_id and not first.workdir.exists()
    fresh.release()

from pathlib import Path

import pytest


class FakeHubApi:
    """HfApi stand-in: records each call, with the files of each uploaded folder (read at once: the publisher may
    upload a temporary folder, as it does for a Space); an upload returns `commit-<number of calls so far>`."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        self.calls.append(("upload_folder", kwargs, files))
        return f"commit-{len(self.calls)}"


@pytest.fixture
def fake_hub_api():
    """The `FakeHubApi` class: call it for a fresh recorder."""
    return FakeHubApi

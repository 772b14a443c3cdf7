"""The authors' Google Drive folder, through gdown (optional dependency): one file of it.

Drive serves large files only after confirmation pages, quota checks and
cookies; gdown (PyPI ``gdown`` 6.x) deals with those. Here its folder API lists
the folder without downloading (``skip_download=True``), the entry is picked
by name, and that one id is downloaded (``resume=True``: a rerun continues
gdown's own partial file).
"""

from __future__ import annotations

import os
from typing import Callable, Optional

DRIVE_FOLDER = "https://drive.google.com/drive/folders/1BTGRbAqXDSNWjyUnTLgDfmjd2xyu8GvP"
INSTALL_GDOWN = "python -m pip install gdown"


class DriveError(Exception):
    """Google Drive or gdown could not deliver the file; the message says why.

    ``network``: Drive could not be reached at all (rather than refusing the file).
    """

    def __init__(self, message: str, network: bool = False):
        super().__init__(message)
        self.network = network


class GdownMissing(DriveError):
    """gdown is not installed in this Python."""


def _gdown():
    try:
        import gdown
    except ImportError:
        raise GdownMissing(f"the Google Drive download needs gdown, which is not installed in "
                           f"this Python; install it with: {INSTALL_GDOWN}") from None
    return gdown


def _first_lines(err: BaseException, n: int = 6) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:n]) or type(err).__name__


def _is_network(err: BaseException, requests) -> bool:
    while err is not None:
        if isinstance(err, (requests.ConnectionError, requests.Timeout)):
            return True
        err = err.__cause__
    return False


def find_file_id(name: str, folder_url: str = DRIVE_FOLDER) -> str:
    """The Drive id of ``name`` in the folder, from gdown's listing (nothing is downloaded)."""
    gdown = _gdown()
    import requests
    try:
        entries = gdown.download_folder(url=folder_url, skip_download=True, quiet=True)
    except (gdown.exceptions.DownloadError, requests.RequestException, ValueError) as err:
        raise DriveError(f"could not list the Google Drive folder: {_first_lines(err)}",
                         network=_is_network(err, requests)) from err
    names = []
    for entry in entries or ():
        base = os.path.basename(entry.path)
        names.append(base)
        if base == name:
            return entry.id
    raise DriveError(f"the Google Drive folder has no file named {name} "
                     f"(it lists: {', '.join(names) or 'nothing'})")


def download(url: str, output: str, progress: Optional[Callable[[int, Optional[int]], None]] = None,
             retries: int = 3, timeout: float = 60.0, use_cookies: bool = True) -> str:
    """gdown.download of ``url`` (a Drive ``uc?id=`` URL, or any URL) to ``output``; returns it.

    gdown keeps its partial file beside ``output`` and continues it on a rerun.
    """
    gdown = _gdown()
    import requests
    try:
        got = gdown.download(url=url, output=output, quiet=True, resume=True, retries=retries,
                             timeout=timeout, progress=progress, use_cookies=use_cookies)
    except (gdown.exceptions.DownloadError, requests.RequestException) as err:
        raise DriveError(_first_lines(err), network=_is_network(err, requests)) from err
    if got is None or not os.path.isfile(output):
        raise DriveError(f"gdown returned without writing {output}")
    return got


def file_url(file_id: str) -> str:
    return f"https://drive.google.com/uc?id={file_id}"

"""Progress bars: ``tqdm.auto``'s, without the warning it prints in a Jupyter kernel that lacks ipywidgets."""

from __future__ import annotations

import warnings


def tqdm(*args, **kwargs):
    """``tqdm.auto.tqdm(*args, **kwargs)``: a widget in Jupyter where ipywidgets is installed (the
    ``lab`` extra, ``make lab``), a text bar on stderr elsewhere. In a kernel without ipywidgets
    (papermill's runs) the first ``import tqdm.auto`` warns "IProgress not found", with the path of
    the site-packages, before it falls back to the text bar; that one warning is silenced, so that
    notebook outputs do not depend on whether the process had imported ``tqdm.auto`` before."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        from tqdm.auto import tqdm as bar
    return bar(*args, **kwargs)

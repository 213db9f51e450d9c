"""Progress bars (``actionlib._progress``): tqdm.auto's bar, without its warning in a Jupyter kernel
that lacks ipywidgets (papermill's runs), so that notebook outputs do not carry it."""

import subprocess
import sys

# A Jupyter kernel as tqdm.autonotebook recognises one (ipykernel's shell imported), without
# ipywidgets; the bar from actionlib first, then tqdm.auto imported afresh as a control.
SCRIPT = """
import sys, types, warnings
sys.modules["ipykernel.zmqshell"] = types.ModuleType("ipykernel.zmqshell")
ipython = types.ModuleType("IPython")
ipython.get_ipython = lambda: type("ZMQInteractiveShell", (), {})()
sys.modules["IPython"] = ipython
sys.modules["ipywidgets"] = None  # not importable, installed or not
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    from actionlib._progress import tqdm
    bar = tqdm(range(3), desc="x", disable=True)
    assert list(bar) == [0, 1, 2]
    ours = len(seen)
    for name in ("tqdm.auto", "tqdm.autonotebook"):
        sys.modules.pop(name, None)
    import tqdm.auto
print(ours, "|".join(str(w.message) for w in seen[ours:]))
"""


def test_progress_bar_without_ipywidgets_warning_in_a_kernel():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
    ours, plain = out.strip().split(" ", 1)
    assert ours == "0"
    assert "IProgress not found" in plain  # the control: tqdm.auto alone warns there

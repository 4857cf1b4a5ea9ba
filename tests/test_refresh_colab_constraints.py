"""scripts/refresh_colab_constraints.py: tests/colab_constraints.txt refreshed from a
``pip list --format=freeze`` of Colab's image, on a sample of both."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("refresh", ROOT / "scripts" / "refresh_colab_constraints.py")
refresh = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = refresh  # dataclasses look their module up there
spec.loader.exec_module(refresh)

CONSTRAINTS = """\
# Colab's stack (a sample in the real file's shape)
#
# Source: Google's Colab backend-info list.
ipywidgets==7.7.1
jedi==0.20.1  # not on Colab
jupyter_client==7.4.9
numpy==2.1.3
PyYAML==6.0.3
torch==2.11.0+cpu  # Colab: by URL from the CPU index
torchvision==0.26.0+cpu  # Colab: by URL from the CPU index
"""

# what `pip list --format=freeze` prints in the image: other spellings, a CUDA build, more packages
PIP_LIST = """\
absl-py==1.4.0
ipywidgets==7.7.1
jupyter-client==8.6.3
numpy==2.2.6
pyyaml==6.0.3
tensorflow==2.19.0
torch==2.12.0+cu126
torchvision==0.26.0+cu126
"""


def test_each_pin_takes_the_images_version_and_keeps_its_comment():
    text, changes, missing = refresh.refresh(CONSTRAINTS, PIP_LIST)
    assert [str(change) for change in changes] == [
        "jupyter_client: 7.4.9 -> 8.6.3",
        "numpy: 2.1.3 -> 2.2.6",
        "torch: 2.11.0+cpu -> 2.12.0+cpu",  # the file's CPU build, at the image's version
    ]
    assert missing == ["jedi"]
    assert text == CONSTRAINTS.replace("jupyter_client==7.4.9", "jupyter_client==8.6.3").replace(
        "numpy==2.1.3", "numpy==2.2.6"
    ).replace("torch==2.11.0+cpu  #", "torch==2.12.0+cpu  #")
    assert "tensorflow" not in text and "absl" not in text  # only what the file already pins


def test_nothing_changes_when_the_image_has_the_pinned_versions():
    same = "\n".join(line.split("#")[0].strip() for line in CONSTRAINTS.splitlines() if "==" in line)
    text, changes, missing = refresh.refresh(CONSTRAINTS, same)
    assert text == CONSTRAINTS and changes == [] and missing == []
    assert refresh.report(changes, missing).startswith("Every version that tests/colab_constraints.txt pins")


def test_pip_freezes_name_at_url_lines_are_read_from_the_wheels_name():
    freeze = "torch @ https://download.pytorch.org/whl/cpu/torch-2.12.0%2Bcpu-cp313-cp313-linux_x86_64.whl\n"
    freeze += "-e git+https://github.com/x/y@abc#egg=y\nPyYAML==6.0.4\n"
    assert refresh.read_freeze(freeze) == {"torch": "2.12.0+cpu", "pyyaml": "6.0.4"}


def test_the_command_line_rewrites_the_file_or_only_reports(tmp_path, capsys):
    constraints, freeze = tmp_path / "colab_constraints.txt", tmp_path / "pip-list.txt"
    constraints.write_text(CONSTRAINTS)
    freeze.write_text(PIP_LIST)
    assert refresh.main([str(freeze), "--constraints", str(constraints), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "- numpy: 2.1.3 -> 2.2.6" in out and "not in the image (kept as they are): jedi" in out
    assert constraints.read_text() == CONSTRAINTS  # a dry run writes nothing
    assert refresh.main([str(freeze), "--constraints", str(constraints)]) == 0
    assert "numpy==2.2.6\n" in constraints.read_text() and "wrote" in capsys.readouterr().out
    freeze.write_text("this is not pip's output\n")
    assert refresh.main([str(freeze), "--constraints", str(constraints)]) == 1


def test_the_real_file_reads_back_as_its_own_image():
    """Every pin of tests/colab_constraints.txt is a line the script reads, its comments included."""
    text = (ROOT / "tests" / "colab_constraints.txt").read_text()
    pins = [line for line in text.splitlines() if line and not line.startswith("#")]
    freeze = "\n".join(line.split("#")[0].strip() for line in pins)
    assert len(refresh.read_freeze(freeze)) == len(pins)
    assert refresh.refresh(text, freeze) == (text, [], [])

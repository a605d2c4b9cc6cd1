"""What ships: the wheel carries every package, template and default file; the container image
definition is slim, non-root, and starts the service with its health check."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_carries_the_domain_packages_and_their_files(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("flowsight-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "flowsight/cli.py",
        "flowsight/collector/schema.py",
        "flowsight/slo/defaults.yaml",
        "flowsight/alerts/defaults.yaml",
        "flowsight/dashboards/templates/base.html",
        "flowsight/dashboards/static/live.js",
        "flowsight/dashboards/static/charts.css",
        "flowsight/dashboards/grafana/flowsight-slos.json",
        "flowsight/demo/runner.py",
    }
    assert expected <= names, sorted(expected - names)


def test_the_image_definition_is_slim_non_root_and_healthy() -> None:
    text = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert bases and all("slim" in b for b in bases)
    [user] = re.findall(r"^USER (\S+)", text, re.M)
    assert not user.startswith(("0", "root"))
    for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for source in sources.split():
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
    assert re.search(r'^ENTRYPOINT \["flowsight"\]', text, re.M)
    assert "/healthz" in text and "EXPOSE 4318" in text

import subprocess
import sys

from lagesbild import runtime


def test_lagesbild_and_the_prefect_cli_share_prefect_home(monkeypatch, tmp_path):
    """lagesbild leaves PREFECT_HOME to Prefect (~/.prefect or the environment's), so the
    `prefect` command line sees the deployments and runs lagesbild makes."""
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    runtime.configure(tmp_path / "data")
    assert "PREFECT_HOME" not in __import__("os").environ
    assert not (tmp_path / "data" / "prefect").exists()
    home = tmp_path / "home" / "prefect"
    monkeypatch.setenv("PREFECT_HOME", str(home))
    runtime.configure(tmp_path / "data")
    assert home.is_dir()  # created with its parents: Prefect would not
    code = "from prefect.settings import get_current_settings as s; print(s().home)"
    seen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert seen.stdout.strip() == str(home)

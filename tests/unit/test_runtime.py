from lagesbild import runtime


def test_prefect_home_is_created_on_a_fresh_data_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    data = tmp_path / "new" / "data"
    runtime.configure(data)
    assert (data / "prefect").is_dir()

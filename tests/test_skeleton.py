import pytest

from src.config import REPO_ROOT, user_errors_exit
from src.errors import PipesynthError


def test_user_error_exits_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    @user_errors_exit
    def entry() -> None:
        raise PipesynthError("model.path '/nope' does not exist", "set model.path=/path/to/Llama-2-7b-hf")

    with pytest.raises(SystemExit) as exc:
        entry()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "model.path" in err[0] and "fix:" in err[0]


def test_repo_root_holds_conf() -> None:
    assert (REPO_ROOT / "conf" / "paths" / "default.yaml").is_file()


def test_auto_threads_count_the_cores_idle_now(monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    from src.config import resolve_threads

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    for percent, threads in ((0.0, 2), (20.0, 2), (50.0, 1), (100.0, 1)):
        monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None, p=percent: p)
        assert resolve_threads("auto") == threads, percent
    assert resolve_threads(3) == 3 and resolve_threads("4") == 4 and resolve_threads(None) is None
